"""Through the real entry point (`python vae_latent/train_ddp.py`): SIGTERM mid-epoch saves and exits 0, `kill -9`
mid-epoch loses only the steps after the last periodic checkpoint, and in both cases `--resume auto` ends with
every tensor of the full checkpoint (model, optimizer, scheduler, scaler, guard, RNG states) and every logged
per-step loss equal to an uninterrupted run's."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common import checkpoint
from tests.state_compare import assert_same_state

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40  # 20 training frames, batch 4: 5 steps per epoch, so every interruption falls inside an epoch
LOSS_LINE = re.compile(r"step (\d+) \| loss (\S+) recon (\S+) kld (\S+)")


def command(config, *extra):
    return [sys.executable, "vae_latent/train_ddp.py", "--config", str(config), *extra]


def env():
    return dict({k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")},
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def interrupt(config, at_step: int, how: signal.Signals) -> tuple[int, str]:
    """Start training, send `how` once step `at_step` is logged; returns the exit status and the output."""
    process = subprocess.Popen(command(config), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if f"step {at_step} |" in line:
            process.send_signal(how)
            break
    output.extend(process.stdout)
    status = process.wait(timeout=120)
    assert f"step {STEPS} |" not in "".join(output), "the run ended before the signal arrived"
    return status, "".join(output)


def losses_per_step(run: Path) -> dict[int, tuple[str, ...]]:
    """step -> (loss, recon, kld) as log.txt printed them (a resumed run's repeated steps must agree)."""
    found: dict[int, tuple[str, ...]] = {}
    for line in (run / "log.txt").read_text().splitlines():
        match = LOSS_LINE.search(line)
        if match:
            step, values = int(match.group(1)), match.groups()[1:]
            assert found.setdefault(step, values) == values, f"step {step} logged twice with different losses"
    return found


@pytest.mark.slow
def test_sigterm_and_kill9_mid_epoch_then_resume_equal_an_uninterrupted_run(frames_data, config_for, tmp_path):
    overrides = dict(data_params={"frames_per_video": "all"},
                     trainer_params={"max_epochs": 1000, "max_steps": STEPS, "deterministic": True},
                     logging_params={"save_every_n_steps": 5, "keep_last_checkpoints": 0})
    runs = {name: config_for(frames_data, name=name, **overrides) for name in ("whole", "sigterm", "kill9")}
    subprocess.run(command(runs["whole"]), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=240)

    status, output = interrupt(runs["sigterm"], 7, signal.SIGTERM)
    assert status == 0 and "Stop requested" in output, output[-3000:]  # saved the step it was on, exited 0
    status, _ = interrupt(runs["kill9"], 8, signal.SIGKILL)
    assert status == -signal.SIGKILL
    resumed_at = {}
    for name in ("sigterm", "kill9"):
        resumed = subprocess.run(command(runs[name], "--resume", "auto"), cwd=ROOT, env=env(), capture_output=True,
                                 text=True, timeout=240)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        resumed_at[name] = int(re.search(r"Resumed from \S+ at step (\d+)", resumed.stdout).group(1))
    assert 7 <= resumed_at["sigterm"] < STEPS  # the signal's own save, wherever it landed
    assert resumed_at["kill9"] % 5 == 0 and resumed_at["kill9"] < STEPS  # only periodic saves survive kill -9

    folder = tmp_path / "logs_vae"
    reference = checkpoint.load(folder / f"whole/checkpoints/step_{STEPS:08d}.pt")
    reference_losses = losses_per_step(folder / "whole")
    assert sorted(reference_losses) == list(range(1, STEPS + 1))
    for name in ("sigterm", "kill9"):
        state = checkpoint.load(folder / f"{name}/checkpoints/step_{STEPS:08d}.pt")
        assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "guard", "rng", "batches_done"}
        state["config"] = reference["config"] = None  # the run folder's name differs by design
        assert_same_state(reference, state, name)
        assert losses_per_step(folder / name) == reference_losses, name
