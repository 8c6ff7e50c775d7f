"""Interrupted runs through the real entry point (shadow/train.py in its own process): SIGTERM, SIGUSR1 and kill -9 in
the middle of an epoch, then `--resume_from latest`, must end with exactly the checkpoint of an uninterrupted run
(every tensor: weights, optimizer, scheduler, scaler, guard, RNG states, baselines) and log the same loss at every
step. Gradient accumulation 2 over 9-batch epochs makes some steps span an epoch boundary."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import checkpoint
from shadow.synth import write_dataset
from tests.state_compare import assert_same_state

TRAIN = Path(__file__).resolve().parents[2] / "shadow" / "train.py"
STEPS = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("resume") / "data", 40, image_size=32)  # 36 train: 9 batches


def command(data, out, *extra):
    return [sys.executable, str(TRAIN), "--data_dir", str(data), "--image_size", "32", "--batch_size", "4",
            "--gradient_accumulation", "2", "--mixed_precision", "no", "--num_workers", "0", "--lr", "1e-3",
            "--warmup_steps", "3", "--max_iterations", str(STEPS), "--save_every", "2", "--eval_every", "100",
            "--log_every", "1", "--output_dir", str(out), *extra]


def run(data, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command(data, out, *extra), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def start(data, out):
    return subprocess.Popen(command(data, out), env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"training ended early: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


def logged_losses(out) -> dict[int, list[float]]:
    """step -> every train/loss value logged for it, over all TensorBoard event files of the run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    losses: dict[int, list[float]] = {}
    for events in sorted((out / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars("train/loss"):
                losses.setdefault(event.step, []).append(event.value)
    return losses


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    run(data, out)
    return out


def compare_with_uninterrupted(resumed, uninterrupted):
    full = checkpoint.load(uninterrupted / "latest_model.pt")
    again = checkpoint.load(resumed / "latest_model.pt")
    assert full["step"] == again["step"] == STEPS
    full_config, again_config = full.pop("config"), again.pop("config")
    assert {**again_config, "output_dir": None, "resume_from": None} == {**full_config, "output_dir": None}
    assert_same_state(full, again)
    reference, losses = logged_losses(uninterrupted), logged_losses(resumed)
    assert sorted(reference) == sorted(losses) == list(range(1, STEPS + 1))
    for step, values in losses.items():
        assert all(value == reference[step][0] for value in values), (step, values, reference[step])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_signal_mid_epoch_then_resume_matches_an_uninterrupted_run(data, uninterrupted, tmp_path, signum):
    out = tmp_path / "signalled"  # SIGUSR1: SLURM's warning before the time limit; SIGTERM: preemption
    process = start(data, out)
    # Step 5 is micro-batch 10: the second batch of epoch 1 (its window began in epoch 0).
    wait_for(lambda: (out / "training.log").is_file() and "step 5/" in (out / "training.log").read_text(), process)
    process.send_signal(signum)
    assert process.wait(timeout=300) == 0
    saved = checkpoint.load(out / "latest_model.pt")
    assert saved["step"] < STEPS and saved["epoch"] >= 1 and 0 < saved["batches_done"] < 9  # mid-epoch
    assert "Preempted: saved at step" in (out / "training.log").read_text()
    run(data, out, "--resume_from", "latest")
    compare_with_uninterrupted(out, uninterrupted)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(data, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    process = start(data, out)
    wait_for(lambda: (out / "checkpoint_6.pt").is_file(), process)  # step 6: epoch 1, batch 3
    process.kill()
    process.wait(timeout=60)
    _, saved = checkpoint.load_latest_valid(out, r"checkpoint_(\d+)\.pt")
    assert 6 <= saved["step"] < STEPS and 0 < saved["batches_done"] < 9  # mid-epoch
    run(data, out, "--resume_from", "latest")
    assert f"Resumed from {out / 'checkpoint_'}" in (out / "training.log").read_text()
    compare_with_uninterrupted(out, uninterrupted)
