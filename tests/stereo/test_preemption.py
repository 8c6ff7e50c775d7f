"""Through the real entry point (`python stereo/scripts/train.py` in a subprocess): SIGTERM mid-epoch saves and
exits 0, kill -9 mid-epoch loses only the steps since the last save, and either way `--checkpoint latest`
finishes with every tensor of the final checkpoint (model, EMA, optimizer, scheduler, RNG states) and every
logged per-step loss equal to an uninterrupted run's."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.state_compare import assert_same_state
from tests.stereo.test_train import resume_config, step_files

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY, BATCHES_PER_EPOCH = 10, 4, 6  # 12 pairs in batches of 2: step 6 ends epoch 0


def _command(config, workspace, *extra):
    return [sys.executable, str(ROOT / "stereo" / "scripts" / "train.py"), "--workspace", str(workspace),
            *(["--config", str(config)] if config else []), *map(str, extra)]


def _first_run_flags():
    return ["--batch_size_forward", 2, "--num_iterations", STEPS, "--save_every", SAVE_EVERY, "--log_every", 1,
            "--enable_gradient_checkpointing", "false", "--deterministic", "true", "--seed", 5, "--enable_mlflow",
            "false"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _losses(workspace) -> dict[int, str]:
    """Logged loss per step (the last line for a step wins: a resumed run repeats the steps after its save)."""
    lines = re.findall(r"step (\d+)  loss (\S+)", (workspace / "log.txt").read_text())
    return {int(step): loss for step, loss in lines}


def _interrupt(config, workspace, at_step: int, sig: int) -> int:
    """Start a run, send `sig` once it has logged `at_step`; returns its exit code."""
    process = subprocess.Popen(_command(config, workspace, *_first_run_flags()), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    log = workspace / "log.txt"
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and re.search(rf"step {at_step}  loss", log.read_text()):
            process.send_signal(sig)
            break
        time.sleep(0.05)
    returncode = process.wait(timeout=300)
    assert returncode != 0 or not re.search(rf"step {STEPS}  loss", log.read_text()), "finished before the signal"
    return returncode


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synth_dirs):
    root = tmp_path_factory.mktemp("uninterrupted")
    config = resume_config(root, synth_dirs)
    subprocess.run(_command(config, root / "ws", *_first_run_flags()), env=_env(), check=True, capture_output=True)
    return config, root / "ws"


def _resume_and_compare(workspace, reference):
    result = subprocess.run(_command(None, workspace, "--checkpoint", "latest"), env=_env(), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_state(step_files(reference, STEPS), step_files(workspace, STEPS))
    assert _losses(workspace) == _losses(reference) and len(_losses(reference)) == STEPS


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_exits_zero_and_resumes_exactly(tmp_path, uninterrupted):
    config, reference = uninterrupted
    workspace = tmp_path / "ws"
    assert _interrupt(config, workspace, at_step=2, sig=signal.SIGTERM) == 0
    state = torch.load(workspace / "checkpoint" / "latest.pt", weights_only=True)
    saved = torch.load(workspace / "checkpoint" / f"{state['step']:08d}_optimizer.pt", weights_only=True)
    assert state["step"] < STEPS and saved["batches_done"] % BATCHES_PER_EPOCH != 0  # saved mid-epoch
    assert "Preempted: saved at step" in (workspace / "log.txt").read_text()
    _resume_and_compare(workspace, reference)


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_exactly_from_the_last_save(tmp_path, uninterrupted):
    config, reference = uninterrupted
    workspace = tmp_path / "ws"
    assert _interrupt(config, workspace, at_step=SAVE_EVERY + 2, sig=signal.SIGKILL) == -signal.SIGKILL
    saved = torch.load(workspace / "checkpoint" / f"{SAVE_EVERY:08d}_optimizer.pt", weights_only=True)
    assert saved["batches_done"] == SAVE_EVERY  # step 4 is in the middle of the 6-batch epoch
    _resume_and_compare(workspace, reference)
