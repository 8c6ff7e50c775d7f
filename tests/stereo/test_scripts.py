"""A short training fits its pairs (the loss falls); evaluate.py, demo.py, summary and synth CLIs write what they
promise. (That the model beats the best constant disparity on held-out pairs is the demo's headline: a run long
enough for that takes minutes on CPU.)"""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from filelock import FileLock

from stereo import summary, synth
from common.package_data import PackageDataUnavailable
from stereo.scripts import demo, evaluate, headline, train
from stereo.train.dataloader import read_pfm, read_disparity

from tests.stereo.conftest import TINY_CONFIG, make_config

STEPS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training shared by all tests here, also across pytest-xdist workers (a file lock in the
    session's common temp folder: the worker that comes second reuses the first one's run). Two pairs, no
    augmentation, one batch per step: the same batch every step, so the loss must fall."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist the workers' folders share this session's parent; without it the parent is shared by sessions.
    root = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "stereo_trained"
    with FileLock(str(root) + ".lock"):
        workspace = root / "ws"
        if not (workspace / "metrics.json").is_file():
            train_dir = synth.write_dataset(root / "train", 2, height=32, width=64, max_disp=24, seed=0)
            val_dir = synth.write_dataset(root / "val", 2, height=48, width=96, max_disp=24, seed=1)
            config = make_config(root, train_dir, val_dir, data={"stereo_augmentation": False},
                                 optimizer={"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0},
                                 lr_scheduler={"kind": "constant", "warmup_steps": 0})
            train.main(["--config", str(config), "--workspace", str(workspace), "--batch_size_forward", "2",
                        "--num_iterations", str(STEPS), "--save_every", str(STEPS), "--log_every", "1",
                        "--enable_gradient_checkpointing", "false", "--enable_mlflow", "false"])
    return {"metrics": json.loads((workspace / "metrics.json").read_text()), "workspace": workspace,
            "val": root / "val", "checkpoint": workspace / "checkpoint" / f"{STEPS:08d}.pt"}


def test_a_short_training_fits_its_batch(trained):
    assert trained["metrics"]["step"] == STEPS
    losses = [float(loss) for loss in re.findall(r"step \d+  loss (\S+)", (trained["workspace"] / "log.txt").read_text())]
    assert len(losses) == STEPS
    assert losses[-1] < 0.7 * losses[0], losses


def test_evaluate_writes_metrics_and_visualisations(trained, tmp_path):
    result = evaluate.main(["--checkpoint", str(trained["checkpoint"]), "--ema", "--data", str(trained["val"]),
                            "--format", "folder", "--valid_iters", "3", "--output", str(tmp_path)])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written) == {f"eval/{k}" for k in ("epe", "rmse", "d1", "d3", "bad2", "kitti_d1", "pairs", "skipped",
                                                   "no_valid_gt", "best_constant", "best_constant_epe")}
    assert written["eval/pairs"] == 2 and written["eval/skipped"] == 0 and written["eval/best_constant_epe"] > 0
    assert written["eval/epe"] == pytest.approx(result["epe"])
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2
    lone = tmp_path / "00000001.pt"
    lone.write_bytes(trained["checkpoint"].read_bytes())  # a model file without its _ema.pt
    with pytest.raises(FileNotFoundError, match="00000001_ema.pt"):
        evaluate.main(["--checkpoint", str(lone), "--ema", "--data", str(trained["val"]), "--output", str(tmp_path)])


def test_demo_writes_npy_pfm_png_for_any_input_size(trained, tmp_path):
    left = cv2.imread(str(trained["val"] / "left" / "rgb" / "000000.png"))[:45, :77]
    right = cv2.imread(str(trained["val"] / "right" / "rgb" / "000000.png"))[:45, :77]
    cv2.imwrite(str(tmp_path / "l.png"), left)
    cv2.imwrite(str(tmp_path / "r.png"), right)
    disparity = demo.main(["--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"),
                           "--checkpoint", str(trained["checkpoint"]), "--output", str(tmp_path / "out")])
    assert disparity.shape == (45, 77)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "disparity.npy"), disparity)
    np.testing.assert_array_equal(read_pfm(tmp_path / "out" / "disparity.pfm"), disparity)
    assert cv2.imread(str(tmp_path / "out" / "disparity.png")).shape == (45, 77, 3)


def test_summary_counts_the_paper_size_model_on_meta(capsys):
    config = TINY_CONFIG.parent / "foundation_stereo_vitl.json"
    total = summary.main(["--config", str(config)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"total_params: {total}"
    assert total == 374_517_067  # the reference's ViT-L build, counted there (issue 13)
    assert lines[-2].split() == ["trainable", "39,201,418"]
    parts = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines[1:-2]}
    assert sum(parts.values()) == total


def test_synth_cli_writes_the_folder_format_with_right_disparity(tmp_path):
    subprocess.run([sys.executable, "-m", "stereo.synth", "--out", str(tmp_path), "--num", "2", "--height", "40",
                    "--width", "64", "--max_disp", "16"], check=True, capture_output=True)
    for sub in ("left/rgb", "right/rgb", "left/disparity", "right/disparity"):
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == ["000000.png", "000001.png"]
    disp = read_disparity(tmp_path / "left" / "disparity" / "000000.png")
    assert disp.shape == (40, 64) and 0 < disp.min() and disp.max() <= 16


def test_headline_rows_put_the_model_beside_the_best_constant_and_the_real_pair(trained, tmp_path):
    try:
        rows = headline.main(["--run", str(trained["workspace"]), "--checkpoint", str(trained["checkpoint"]),
                              "--output", str(tmp_path / "headline.json"), "--real_scale", "0.25"])["rows"]
    except PackageDataUnavailable as exc:  # only when the package index cannot be reached
        pytest.skip(str(exc))
    assert json.loads((tmp_path / "headline.json").read_text())["rows"] == rows
    assert [row["kind"] for row in rows] == ["model", "baseline", "real", "real"]
    assert rows[0]["value"] == pytest.approx(trained["metrics"]["val/epe"])
    assert rows[1]["value"] == pytest.approx(trained["metrics"]["val/best_constant_epe"])
    assert "185x125" in rows[2]["name"] and all(np.isfinite(row["value"]) for row in rows)
    assert not any(row["higher_is_better"] for row in rows)
    sample = headline.motorcycle_sample(0.25, 32)
    assert sample["left"].shape == (3, 125, 185) and sample["disparity"].shape == (1, 125, 185)
    valid = sample["disparity"][sample["valid"]]
    assert 0.85 < float(sample["valid"].float().mean()) and 1.5 < float(valid.min()) and float(valid.max()) < 16
    # The real pair's best constant is the weighted median of its valid GT: no other constant does better.
    median = float(valid.median())
    assert rows[3]["value"] <= float((valid - median).abs().mean()) + 0.02
