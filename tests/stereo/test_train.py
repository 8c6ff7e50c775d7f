"""The training script end to end on tiny synthetic data: checkpoint files, every resume variant, exact resume,
config and flag errors, metrics.json."""
import argparse
import json
import shutil

import pytest
import torch

from common.config import ConfigError
from stereo.scripts import train
from stereo.train.config import load_config
from stereo.train.utils import str2bool

from tests.stereo.conftest import make_config

SMALL_MODEL = {"hidden_dims": [16, 16, 16], "feature_channels": [8, 8, 16, 16, 16], "feature_dim": 16,
               "volume_dim": 4, "motion_dim": 16}


def _run(config, workspace, *extra):
    argv = ["--config", str(config), "--workspace", str(workspace), "--batch_size_forward", "2",
            "--log_every", "1", "--save_every", "2", "--enable_gradient_checkpointing", "false",
            "--deterministic", "true", "--seed", "3", *map(str, extra)]
    return train.main(argv)


def _weights(workspace, step):
    return torch.load(workspace / "checkpoint" / f"{step:08d}.pt", weights_only=True)["model"]


@pytest.fixture
def config(tmp_path, synth_dirs):
    return make_config(tmp_path, *synth_dirs, model=SMALL_MODEL)


def test_checkpoint_files_and_metrics(tmp_path, config):
    metrics = _run(config, tmp_path / "ws", "--num_iterations", 4, "--vis_every", 2)
    files = sorted(p.name for p in (tmp_path / "ws" / "checkpoint").iterdir())
    assert files == ["00000002.pt", "00000002_ema.pt", "00000002_optimizer.pt",
                     "00000004.pt", "00000004_ema.pt", "00000004_optimizer.pt", "latest.pt"]
    assert torch.load(tmp_path / "ws" / "checkpoint" / "latest.pt", weights_only=True)["step"] == 4
    written = json.loads((tmp_path / "ws" / "metrics.json").read_text())
    for key in ("val/epe", "val/d1", "val/kitti_d1", "val/baseline_mean_epe", "step"):
        assert key in written
    assert written == pytest.approx(metrics)
    assert (tmp_path / "ws" / "vis" / "00000004.png").is_file()
    assert any((tmp_path / "ws" / "tensorboard").iterdir())
    assert (tmp_path / "ws" / "config.json").is_file()


def test_resume_latest_step_and_path_is_exact(tmp_path, config):
    _run(config, tmp_path / "straight", "--num_iterations", 4)
    _run(config, tmp_path / "split", "--num_iterations", 2)
    _run(config, tmp_path / "split", "--num_iterations", 4, "--checkpoint", "latest")
    reference = _weights(tmp_path / "straight", 4)
    resumed = _weights(tmp_path / "split", 4)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    # By step number and by the step's .pt path: both continue from step 2 to the same weights.
    for spec in ("2", str(tmp_path / "split" / "checkpoint" / "00000002.pt")):
        workspace = tmp_path / f"again_{len(spec)}"
        shutil.copytree(tmp_path / "split" / "checkpoint", workspace / "checkpoint")
        (workspace / "checkpoint" / "00000004.pt").unlink()
        _run(config, workspace, "--num_iterations", 4, "--checkpoint", spec)
        again = _weights(workspace, 4)
        assert all(torch.equal(reference[k], again[k]) for k in reference), spec


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


def test_gradient_accumulation_and_bf16_run(tmp_path, config):
    metrics = _run(config, tmp_path / "acc", "--num_iterations", 2, "--gradient_accumulation_steps", 2,
                   "--enable_mixed_precision", "true", "--enable_ema", "false")
    assert metrics["step"] == 2 and metrics["val/epe"] is not None
    assert not (tmp_path / "acc" / "checkpoint" / "00000002_ema.pt").exists()


def test_boolean_flags_take_true_or_false_only():
    assert str2bool("true") is True and str2bool("False") is False
    with pytest.raises(argparse.ArgumentTypeError, match="maybe"):
        str2bool("maybe")
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args(["--enable_ema", "maybe"])
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args(["--no_such_flag", "1"])


def test_config_errors_name_the_key(tmp_path, synth_dirs):
    path = make_config(tmp_path, *synth_dirs, model={"max_dispx": 64})
    with pytest.raises(ConfigError, match="model.max_dispx"):
        load_config(path)
    path = make_config(tmp_path, *synth_dirs, model={"max_disp": 100})
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(path)
    config = json.loads(path.read_text())
    config["model"]["max_disp"] = 32
    config["data"]["datasets"][0]["colour"] = 1
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"data.datasets\[0\].colour"):
        load_config(path)


def test_mlflow_flag(tmp_path, config):
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="mlflow"):
            _run(config, tmp_path / "m", "--num_iterations", 1, "--enable_mlflow", "true")
    else:
        _run(config, tmp_path / "m", "--num_iterations", 1, "--enable_mlflow", "true")
        assert (tmp_path / "m" / "mlflow.db").is_file()
