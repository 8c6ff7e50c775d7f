"""End to end on a stand-in for the released checkpoint: a small model saved in the reference's layout
(model_best_bp2.pth + cfg.yaml) is evaluated, run on a pair, and used to start a training (--init_from)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data import read_image
from stereo.core.model import build_model
from stereo.core.official import save_official
from stereo import inference
from stereo.scripts import demo, evaluate, train
from stereo.train.dataloader import EvalDataset
from stereo.train.evaluation import evaluate_dataset

TINY = Path(__file__).resolve().parents[2] / "stereo" / "configs" / "train" / "stereo_tiny.json"
SMALL = {"vit_size": "vits", "max_disp": 32, "hidden_dims": [32, 32, 32], "train_iters": 2, "valid_iters": 2,
         "vit_weights": "random", "edgenext_weights": "random"}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(model, path of model_best_bp2.pth) with cfg.yaml beside it, as the reference's release folders."""
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    return model, save_official(tmp_path_factory.mktemp("23-51-11"), model, global_step=1000, epoch=3)


@pytest.mark.slow
def test_evaluate_and_demo_accept_the_released_format(release, synth_dirs, tmp_path):
    model, path = release
    _, val = synth_dirs
    metrics = evaluate.main(["--checkpoint", str(path), "--data", str(val), "--format", "folder", "--valid_iters", "2",
                             "--output", str(tmp_path / "eval"), "--num_vis", "1"])
    expected = evaluate_dataset(inference.model_predictor(model, torch.device("cpu"), iters=2),
                                EvalDataset(str(val), "folder", 32), torch.device("cpu"))
    assert metrics["epe"] == pytest.approx(expected["epe"], rel=1e-6) and np.isfinite(metrics["epe"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["eval/epe"] == pytest.approx(metrics["epe"])

    left, right = val / "left" / "rgb" / "000000.png", val / "right" / "rgb" / "000000.png"
    disparity = demo.main(["--left", str(left), "--right", str(right), "--checkpoint", str(path),
                           "--cfg", str(path.with_name("cfg.yaml")), "--valid_iters", "2", "--output", str(tmp_path / "demo")])
    with torch.no_grad():
        image = lambda p: torch.from_numpy(read_image(p)).permute(2, 0, 1)[None].float()
        direct = model(image(left), image(right), iters=2, test_mode=True)[0, 0].numpy()
    assert disparity.shape == read_image(left).shape[:2]
    np.testing.assert_allclose(np.load(tmp_path / "demo" / "disparity.npy"), direct, atol=1e-4)


def test_a_released_checkpoint_without_its_cfg_is_a_clear_error(release, synth_dirs, tmp_path):
    _, path = release
    lonely = tmp_path / "model_best_bp2.pth"
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="needs its cfg.yaml: pass --cfg"):
        inference.load_model(str(lonely), False, torch.device("cpu"), None)


@pytest.mark.slow
def test_training_starts_from_the_released_weights_with_the_frozen_branch_frozen(release, synth_dirs, tmp_path):
    model, path = release
    train_dir, val_dir = synth_dirs
    config = json.loads(TINY.read_text())
    config["model"].update(SMALL)
    config["data"].update({"image_sizes": [[32, 64]], "datasets": [{"name": "synth", "path": str(train_dir)}],
                           "val_datasets": [{"name": "val", "path": str(val_dir)}]})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    workspace = tmp_path / "run"
    train.main(["--config", str(config_path), "--workspace", str(workspace), "--init_from", str(path),
                "--num_iterations", "1", "--batch_size_forward", "2", "--save_every", "1", "--log_every", "1",
                "--enable_ema", "false", "--enable_gradient_checkpointing", "false"])
    trained = torch.load(workspace / "checkpoint" / "00000001.pt", weights_only=True)["model"]
    released = model.state_dict()
    frozen = [k for k in released if k.startswith("feature.dino.")]
    assert frozen and all(torch.equal(trained[k], released[k]) for k in frozen)
    # One AdamW step from the released weights: trainable weights moved, by about the learning rate.
    change = (trained["update_block.gru04.conv1.0.weight"] - released["update_block.gru04.conv1.0.weight"]).abs().max()
    assert 0 < float(change) < 10 * config["optimizer"]["lr"]
