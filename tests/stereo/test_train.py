"""The training script in-process on tiny synthetic data: checkpoint files, every resume variant (exact in every
tensor), fallback past truncated steps, the latest.pt pointer, pruning, refused config changes and fresh runs
into used folders, flag validation, metrics.json."""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stereo.core.pretrained import PretrainedWeightsError
from stereo.scripts import train
from stereo.synth import write_dataset
from stereo.train.checkpoints import CheckpointWriter
from stereo.train.cli import str2bool
from stereo.train.resume import ConfigChangeError, resolve_checkpoint

from tests.stereo.conftest import make_config
from tests.state_compare import assert_same_state

ROOT = Path(__file__).resolve().parents[2]

SMALL_MODEL = {"hidden_dims": [16, 16, 16]}  # the smallest FoundationStereo (vitt, random weights)
# A schedule that does not depend on --num_iterations, so a run can be split into shorter runs and stay exact.
CONSTANT_LR = {"kind": "constant", "warmup_steps": 2}


def _run(config, workspace, *extra):
    argv = ["--config", str(config), "--workspace", str(workspace), "--batch_size_forward", "2",
            "--log_every", "1", "--save_every", "2", "--enable_gradient_checkpointing", "false",
            "--deterministic", "true", "--seed", "3", "--enable_mlflow", "false", *map(str, extra)]
    return train.main(argv)


def _resume(workspace, *extra):
    """Continue the run in `workspace` with its own settings (no --config, no flags but the given ones)."""
    return train.main(["--workspace", str(workspace), *map(str, extra)])


def step_files(workspace, step) -> dict:
    folder = workspace / "checkpoint"
    return {suffix: torch.load(folder / f"{step:08d}{suffix}.pt", weights_only=True)
            for suffix in ("", "_ema", "_optimizer")}


def resume_config(folder, synth_dirs, name="config.json", **overrides):
    """The resume tests' config: no validation set (the comparisons are of checkpoints, and it saves time)."""
    return make_config(folder, *synth_dirs, name=name, model=SMALL_MODEL, lr_scheduler=CONSTANT_LR,
                       data={"val_datasets": []}, **overrides)


@pytest.fixture
def config(tmp_path, synth_dirs):
    return resume_config(tmp_path, synth_dirs)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, synth_dirs):
    """One uninterrupted 4-step run (saves at 2 and 4) that the resume tests compare against."""
    root = tmp_path_factory.mktemp("straight")
    _run(resume_config(root, synth_dirs), root / "ws", "--num_iterations", 4)
    return root / "ws"


def test_checkpoint_files_and_metrics(tmp_path, synth_dirs):
    config = make_config(tmp_path, *synth_dirs, model=SMALL_MODEL)
    metrics = _run(config, tmp_path / "ws", "--num_iterations", 4, "--vis_every", 2)
    files = sorted(p.name for p in (tmp_path / "ws" / "checkpoint").iterdir())
    assert files == ["00000002.pt", "00000002_ema.pt", "00000002_optimizer.pt",
                     "00000004.pt", "00000004_ema.pt", "00000004_optimizer.pt", "latest.pt"]
    assert torch.load(tmp_path / "ws" / "checkpoint" / "latest.pt", weights_only=True)["step"] == 4
    ema = torch.load(tmp_path / "ws" / "checkpoint" / "00000004_ema.pt", weights_only=True)
    assert int(ema["n_averaged"]) == 4  # the whole AveragedModel: four updates so far
    written = json.loads((tmp_path / "ws" / "metrics.json").read_text())
    for key in ("val/epe", "val/d1", "val/kitti_d1", "val/baseline_mean_epe", "val/best_constant_epe", "step"):
        assert key in written
    assert written["val/pairs"] == 3 and written["val/skipped"] == 0
    assert written["val/best_constant_epe"] <= written["val/baseline_mean_epe"] + 0.01  # the oracle constant
    assert written == pytest.approx(metrics)
    assert (tmp_path / "ws" / "vis" / "00000004.png").is_file()
    assert any((tmp_path / "ws" / "tensorboard").iterdir())
    saved = json.loads((tmp_path / "ws" / "config.json").read_text())
    assert saved["data"]["image_sizes"] == [[64, 32]] and saved["loss"]["stereo"]["init"]["function"] == "smooth_l1"


@pytest.mark.slow
def test_resume_latest_step_and_path_is_exact_in_every_tensor(tmp_path, config, straight):
    _run(config, tmp_path / "split", "--num_iterations", 2)
    _resume(tmp_path / "split", "--checkpoint", "latest", "--num_iterations", 4)
    reference = step_files(straight, 4)
    assert_same_state(reference, step_files(tmp_path / "split", 4))
    # By step number, by the step's .pt path and by the latest.pt pointer: the same step, every saved tensor (one
    # of them also trained on: the resumed training itself is the "latest" run above).
    workspace = tmp_path / "by_spec"
    shutil.copytree(tmp_path / "split" / "checkpoint", workspace / "checkpoint")
    for suffix in ("", "_ema", "_optimizer"):
        (workspace / "checkpoint" / f"00000004{suffix}.pt").unlink()
    torch.save({"model_config": {}, "step": 2}, workspace / "checkpoint" / "latest.pt")
    saved = step_files(straight, 2)
    for spec in ("2", "{ws}/checkpoint/00000002.pt", "{ws}/checkpoint/latest.pt", "latest", "{ws}/checkpoint"):
        point = resolve_checkpoint(spec.format(ws=workspace), workspace / "checkpoint")
        assert point.step == 2 and point.training is not None, spec
        assert_same_state(saved[""]["model"], point.model, spec)
        assert_same_state(saved["_ema"]["model"], point.ema["model"], spec)
        assert_same_state(saved["_ema"]["n_averaged"], point.ema["n_averaged"], spec)
        assert_same_state(saved["_optimizer"]["optimizer"], point.training["optimizer"], spec)
    _resume(workspace, "--checkpoint", "{ws}/checkpoint/latest.pt".format(ws=workspace), "--num_iterations", 4)
    assert_same_state(reference, step_files(workspace, 4), "pointer")


def test_latest_passes_over_a_truncated_newest_step(tmp_path, config, straight):
    workspace = tmp_path / "ws"
    shutil.copytree(straight / "checkpoint", workspace / "checkpoint")
    newest = workspace / "checkpoint" / "00000004_optimizer.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a save cut short (not by our atomic writer: by the disk)
    (workspace / "checkpoint" / ".00000004.pt.abc123.tmp").write_bytes(b"partial")  # an interrupted save
    _resume(workspace, "--checkpoint", "latest", "--num_iterations", 4)
    assert_same_state(step_files(straight, 4), step_files(workspace, 4))  # resumed from step 2, redid 3 and 4
    assert not (workspace / "checkpoint" / ".00000004.pt.abc123.tmp").exists()
    log = (workspace / "log.txt").read_text()
    assert "unreadable (truncated or corrupt?)" in log and "starting at step 2" in log


def test_pruning_keeps_the_pointed_step_and_other_timelines(tmp_path, synth_dirs, straight):
    """Resuming from step 2 while step 4 exists writes step 3: pruning to keep_last 1 removes step 2 (the run it
    continues) but neither step 3 (latest.pt) nor step 4 (another timeline)."""
    workspace = tmp_path / "ws"
    shutil.copytree(straight / "checkpoint", workspace / "checkpoint")
    keep_one = resume_config(tmp_path, synth_dirs, train={"keep_last": 1})
    _resume(workspace, "--config", keep_one, "--checkpoint", 2, "--num_iterations", 3, "--save_every", 3)
    names = sorted(p.name for p in (workspace / "checkpoint").iterdir())
    assert names == ["00000003.pt", "00000003_ema.pt", "00000003_optimizer.pt",
                     "00000004.pt", "00000004_ema.pt", "00000004_optimizer.pt", "latest.pt"]
    assert torch.load(workspace / "checkpoint" / "latest.pt", weights_only=True)["step"] == 3


def test_checkpoint_writer_prunes_only_its_own_and_earlier_steps(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for step in (2, 4, 6):
        for suffix in ("", "_ema", "_optimizer"):
            (folder / f"{step:08d}{suffix}.pt").write_bytes(b"x")
    writer = CheckpointWriter(folder, keep_last=2, resumed_step=4)
    for step in (5, 7):
        (folder / f"{step:08d}_optimizer.pt").write_bytes(b"x")
        writer.prunable.add(step)
        writer.prune(keep=step)
    left = sorted(int(p.name[:8]) for p in folder.glob("*_optimizer.pt"))
    assert left == [5, 6, 7]  # 2 and 4 (up to the resumed step) pruned; 6 (not this run's) untouched


def test_weights_only_path_starts_at_step_zero_and_missing_step_is_an_error(tmp_path, config):
    _run(config, tmp_path / "a", "--num_iterations", 2)
    weights = tmp_path / "weights.pt"
    shutil.copy(tmp_path / "a" / "checkpoint" / "00000002.pt", weights)
    metrics = _run(config, tmp_path / "b", "--num_iterations", 2, "--checkpoint", weights)
    assert metrics["step"] == 2 and (tmp_path / "b" / "checkpoint" / "00000002.pt").is_file()
    with pytest.raises(FileNotFoundError, match="step 7.*Steps present.*\\[2\\]"):
        _run(config, tmp_path / "a", "--num_iterations", 8, "--checkpoint", 7)
    # 'latest' with nothing saved yet starts fresh.
    assert _run(config, tmp_path / "fresh", "--num_iterations", 1, "--checkpoint", "latest")["step"] == 1


def test_fresh_run_into_a_used_workspace_and_changed_settings_are_refused(tmp_path, synth_dirs, config):
    _run(config, tmp_path / "ws", "--num_iterations", 2)
    with pytest.raises(FileExistsError, match="already holds checkpoints.*--checkpoint latest"):
        _run(config, tmp_path / "ws", "--num_iterations", 4)
    with pytest.raises(ConfigChangeError, match="settings.batch_size_forward: 2 -> 3"):
        _resume(tmp_path / "ws", "--checkpoint", "latest", "--num_iterations", 4, "--batch_size_forward", 3)
    faster = resume_config(tmp_path, synth_dirs, name="faster.json", optimizer={"lr": 1e-2})
    with pytest.raises(ConfigChangeError, match="config.optimizer.lr: 0.0002 -> 0.01"):
        _resume(tmp_path / "ws", "--config", faster, "--checkpoint", "latest", "--num_iterations", 4)
    metrics = _resume(tmp_path / "ws", "--config", faster, "--checkpoint", "latest", "--num_iterations", 3,
                      "--allow_config_change", "true")
    assert metrics["step"] == 3


@pytest.mark.parametrize("flag, value, message", [
    ("--save_every", "0", "--save_every: must be >= 1, got 0"),
    ("--batch_size_forward", "-2", "--batch_size_forward: must be >= 1, got -2"),
    ("--log_every", "x", "--log_every: expected an integer, got 'x'"),
    ("--vis_every", "-1", "--vis_every: must be >= 0, got -1"),
    ("--enable_ema", "maybe", "--enable_ema: expected true or false, got 'maybe'"),
])
def test_bad_flags_are_start_up_errors_naming_the_flag(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args([flag, value])
    assert message in capsys.readouterr().err


def test_boolean_flags_take_true_or_false_only():
    assert str2bool("true") is True and str2bool("False") is False
    with pytest.raises(argparse.ArgumentTypeError, match="maybe"):
        str2bool("maybe")
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args(["--no_such_flag", "1"])


def test_the_guide_defaults():
    args = train.get_args_parser().parse_args([])
    assert args.workspace == "workspace/stereo_train" and args.checkpoint is None
    assert {key: train.RUN_DEFAULTS[key] for key in ("batch_size_forward", "num_iterations", "save_every",
                                                     "log_every", "vis_every", "enable_mlflow", "seed")} == {
        "batch_size_forward": 4, "num_iterations": 100000, "save_every": 5000, "log_every": 500, "vis_every": 0,
        "enable_mlflow": True, "seed": 0}


@pytest.mark.slow
def test_gradient_accumulation_and_bf16_on_cpu_train_every_step(tmp_path, synth_dirs):
    # One validation pair: CPU bf16 convolutions are slow, and one pair shows that validation runs in bf16.
    one_val_pair = write_dataset(tmp_path / "val", 1, height=48, width=96, max_disp=24, seed=1)
    config = make_config(tmp_path, synth_dirs[0], one_val_pair, model=SMALL_MODEL)
    metrics = _run(config, tmp_path / "acc", "--num_iterations", 2, "--gradient_accumulation_steps", 2,
                   "--enable_mixed_precision", "true", "--enable_ema", "false")
    assert metrics["step"] == 2 and metrics["train/skipped_nonfinite_steps"] == 0
    assert metrics["val/epe"] is not None
    assert not (tmp_path / "acc" / "checkpoint" / "00000002_ema.pt").exists()


@pytest.mark.slow
def test_mlflow_tracking_uri_and_params(tmp_path, synth_dirs, monkeypatch):
    config = make_config(tmp_path, *synth_dirs, model=SMALL_MODEL)
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _run(config, tmp_path / "m", "--num_iterations", 1, "--enable_mlflow", "true")
    assert (tmp_path / "m" / "mlflow.db").is_file()  # the default: a SQLite store in the workspace
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _run(config, tmp_path / "n", "--num_iterations", 1, "--enable_mlflow", "true")
    assert not (tmp_path / "n" / "mlflow.db").exists()
    assert not (Path.cwd() / "mlruns").exists()  # artifacts stay with the run, not in the current folder
    assert (tmp_path / "n" / "mlartifacts").is_dir()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["stereo"], output_format="list")
    assert len(runs) == 1
    params, metrics = runs[0].data.params, runs[0].data.metrics
    assert params["config.optimizer.lr"] == "0.0002" and params["settings.batch_size_forward"] == "2"
    assert params["config.data.image_sizes"] == "[[64, 32]]"
    assert "train_loss" in metrics and "val_epe" in metrics


def test_the_guides_config_builds_foundation_stereo_and_names_the_missing_weights_file(tmp_path, synth_dirs):
    guide = json.loads((Path(train.DEFAULT_CONFIG)).read_text())
    guide["data"]["datasets"][0]["path"] = str(synth_dirs[0])
    path = tmp_path / "stereo_v1.json"
    path.write_text(json.dumps(guide))
    with pytest.raises(PretrainedWeightsError, match=r"model.vit_weights: file not found: "
                                                     r"pretrained_models/depth_anything_v2_vitl.pth"):
        _run(path, tmp_path / "ws", "--num_iterations", 1)
    result = subprocess.run([sys.executable, "stereo/scripts/train.py", "--config", str(path), "--workspace",
                             str(tmp_path / "cli"), "--enable_mlflow", "false"], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "train.py: error: model.vit_weights: file not found" in result.stderr
