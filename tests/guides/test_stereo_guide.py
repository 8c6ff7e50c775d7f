"""The stereo guide (`tests/guides/text/stereo.txt`), its commands in the guide's order, run from `stereo/`.

Only paths and sizes are substituted: the guide's config (FoundationStereo ViT-L with the released DepthAnything-V2
and EdgeNeXt weights, which cannot be downloaded here) becomes the tiny FoundationStereo config pointed at
synthetic data, and batch sizes and step counts shrink. Where the guide's command cannot run here (its weights are
absent), the test asserts the message that says what is missing.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from tests.guides.conftest import ROOT, GuideCommand, assert_quotes_guide, run_guide_command
from tests.stereo.conftest import make_config, synth_dirs  # noqa: F401 (the synthetic pairs fixture)
from tests.state_compare import assert_same_state
from tests.stereo.test_train import step_files

BASIC = GuideCommand(47, "python scripts/train.py --config configs/train/stereo_v1.json",
                     (("--config", "--workspace {workspace} --config"),))
ACCELERATE = GuideCommand(
    50, "accelerate launch scripts/train.py --config configs/train/stereo_v1.json --workspace "
        "workspace/stereo_experiment --batch_size_forward 4 --enable_mixed_precision true --num_iterations 100000",
    (("configs/train/stereo_v1.json", "{config}"), ("workspace/stereo_experiment", "{workspace}"),
     ("--batch_size_forward 4", "--batch_size_forward 1"), ("--num_iterations 100000", "--num_iterations 2")))
DEBUG = GuideCommand(
    254, "python scripts/train.py --config configs/train/stereo_v1.json --batch_size_forward 1 --num_iterations 100 "
         "--log_every 10 --save_every 50",
    (("configs/train/stereo_v1.json", "{config} --workspace {workspace}"), ("--num_iterations 100", "--num_iterations 4"),
     ("--log_every 10", "--log_every 1"), ("--save_every 50", "--save_every 2")))

# What `accelerate config` writes for "multi-GPU, 1 machine, 2 processes" (the guide's distributed launch): on a
# machine without GPUs accelerate's launcher still starts the processes through torchrun and they train with gloo.
ACCELERATE_CONFIG = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
                     "num_processes": 2, "machine_rank": 0, "main_training_function": "main",
                     "mixed_precision": "no", "use_cpu": False, "gpu_ids": "all", "rdzv_backend": "static",
                     "same_network": True}


@pytest.fixture
def tiny_config(tmp_path, synth_dirs):
    return make_config(tmp_path, *synth_dirs, model={"hidden_dims": [16, 16, 16]}, data={"val_datasets": []},
                       lr_scheduler={"kind": "constant", "warmup_steps": 1})


def test_line47_the_guides_config_names_what_is_missing_here(tmp_path):
    """The guide's config reads `data/` (not shipped) and the released ViT-L weights (not downloadable): the run
    stops at start-up with a one-line error naming the first missing thing, no traceback, nothing trained."""
    assert_quotes_guide("stereo", BASIC)
    result = run_guide_command("stereo", BASIC.command(workspace=str(tmp_path / "ws")), expect_success=False,
                               timeout=300)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "train.py: error: Dataset folder not found: data" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ws" / "checkpoint").exists()  # stopped before building anything
    assert not (tmp_path / "ws" / "mlflow.db").exists() and not (tmp_path / "ws" / "tensorboard").exists()


@pytest.mark.slow
def test_line50_accelerate_launch_trains_with_two_processes(tmp_path, tiny_config):
    assert_quotes_guide("stereo", ACCELERATE)
    home = tmp_path / "hf_home"
    (home / "accelerate").mkdir(parents=True)
    (home / "accelerate" / "default_config.yaml").write_text(json.dumps(ACCELERATE_CONFIG))
    workspace = tmp_path / "ws"
    run_guide_command("stereo", ACCELERATE.command(config=str(tiny_config), workspace=str(workspace)),
                      env={"HF_HOME": str(home), "CUDA_VISIBLE_DEVICES": ""}, timeout=600)
    log = (workspace / "log.txt").read_text()
    assert "world size 2" in log, log[-2000:]
    assert (workspace / "checkpoint" / "00000002.pt").is_file()
    assert torch.load(workspace / "checkpoint" / "latest.pt", weights_only=True)["step"] == 2


@pytest.mark.slow
def test_line254_debug_mode_logs_every_step_and_saves_every_other(tmp_path, tiny_config):
    assert_quotes_guide("stereo", DEBUG)
    workspace = tmp_path / "ws"
    run_guide_command("stereo", DEBUG.command(config=str(tiny_config), workspace=str(workspace)), timeout=600)
    steps = [int(step) for step in re.findall(r"step (\d+)  loss", (workspace / "log.txt").read_text())]
    assert steps == [1, 2, 3, 4]
    files = sorted(p.name for p in (workspace / "checkpoint").glob("0*.pt"))
    assert files == ["00000002.pt", "00000002_ema.pt", "00000002_optimizer.pt",
                     "00000004.pt", "00000004_ema.pt", "00000004_optimizer.pt"]
    assert (ROOT / "stereo" / "configs" / "train" / "stereo_v1.json").is_file()


# The guide's three ways to resume (lines 197, 200, 203). The guide runs them in its default workspace
# (workspace/stereo_train); here each gets its own, and its step number and file path name the short run's.
RESUME_LATEST = GuideCommand(197, "python scripts/train.py --checkpoint latest",
                             (("--checkpoint", "--workspace {workspace} --checkpoint"),))
RESUME_STEP = GuideCommand(200, "python scripts/train.py --checkpoint 50000",
                           (("--checkpoint 50000", "--workspace {workspace} --checkpoint 2"),))
RESUME_FILE = GuideCommand(203, "python scripts/train.py --checkpoint /path/to/checkpoint.pt",
                           (("--checkpoint /path/to/checkpoint.pt", "--workspace {workspace} --checkpoint {file}"),))


@pytest.mark.slow
def test_lines197_to_203_resume_from_latest_a_step_and_a_file_equal_the_uninterrupted_run(tmp_path, tiny_config):
    """A 4-step run saves steps 2 and 4. Each guide command continues from step 2 (with the run's own config and
    flags, none given again) and must write a step 4 identical in every tensor to the uninterrupted run's."""
    for entry in (RESUME_LATEST, RESUME_STEP, RESUME_FILE):
        assert_quotes_guide("stereo", entry)
    straight = tmp_path / "straight"
    run_guide_command("stereo", f"python scripts/train.py --config {tiny_config} --workspace {straight} "
                                "--batch_size_forward 1 --num_iterations 4 --save_every 2 --log_every 1 "
                                "--deterministic true --enable_mlflow false", timeout=600)
    reference = step_files(straight, 4)

    # latest: the job died between the saves of steps 2 and 4 (step 4's files never written).
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    for path in (killed / "checkpoint").glob("00000004*.pt"):
        path.unlink()
    # a step number: step 4 exists and is written again from step 2.
    by_step = tmp_path / "by_step"
    shutil.copytree(straight, by_step)
    # a file: step 2's model file of the first run, continued in a new workspace.
    by_file = tmp_path / "by_file"
    commands = [(RESUME_LATEST, killed, {}), (RESUME_STEP, by_step, {}),
                (RESUME_FILE, by_file, {"file": str(straight / "checkpoint" / "00000002.pt")})]
    for entry, workspace, values in commands:
        run_guide_command("stereo", entry.command(workspace=str(workspace), **values), timeout=600)
        log = (workspace / "log.txt").read_text()
        assert "Training from step 2 to 4" in log, f"{entry}: {log[-2000:]}"
        assert_same_state(reference, step_files(workspace, 4), where=str(entry))
