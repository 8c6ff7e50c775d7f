"""Resume through the real entry point (laq/scripts/2_train_laq.py in a subprocess): SIGTERM mid-epoch and kill -9
mid-epoch, then trainer.resume_from_checkpoint=latest, end with exactly the state of an uninterrupted run — every
tensor of the final checkpoint (model incl. codebook and NSVQ buffers, optimizer, scaler, guard, RNG of the rank)
and the per-step training losses. Also: per-epoch laq-epochN.ckpt, a refused checkpoint stops the run, and
pruning never deletes the only valid checkpoint."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import checkpoint
from laq.synth import write_dataset
from tests.state_compare import assert_same_state

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "laq" / "scripts" / "2_train_laq.py"
TINY = ["experiment=laq_debug", "data.image_size=32", "model.patch_size=4", "model.dim=32", "model.heads=2",
        "model.dim_head=16", "model.spatial_depth=1", "model.temporal_depth=1", "data.num_workers=0",
        "data.max_samples=null", "data.batch_size=2", "data.offsets=[1,3]", "data.val_split=0.1",
        "training.epochs=100", "training.deterministic=true", "model.nsvq.replace_schedule=[[4,100]]",
        "training.val_every_steps=1000", "logging.log_every=1", "logging.image_every=1000", "trainer.device=cpu"]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), *TINY, f"data.folder={data}", f"hydra.run.dir={run_dir}", *extra]


def train(data: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command(data, run_dir, *extra), env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def interrupt(data: Path, run_dir: Path, when, sig: int, *extra: str) -> None:
    """Start a run, send `sig` as soon as when(run_dir) is true, wait for it to end."""
    process = subprocess.Popen(command(data, run_dir, *extra), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not when(run_dir):
        assert process.poll() is None, f"the run ended before it could be interrupted: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "timed out waiting to interrupt"
        time.sleep(0.005)
    process.send_signal(sig)
    process.wait(timeout=120)


def logged_step(n: int):
    return lambda run_dir: (run_dir / "log.txt").is_file() and f"step {n}/" in (run_dir / "log.txt").read_text()


def step_losses(run_dir: Path) -> dict[int, float]:
    """train/loss per step from TensorBoard (a re-done step after kill -9 replaces the lost run's value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    values = {}
    for events in sorted((run_dir / "tb").glob("events.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        values.update({e.step: e.value for e in accumulator.Scalars("train/loss")})
    return values


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Data (40 scenes -> 36 train scenes, batch 2: 18 steps per epoch) and an uninterrupted 24-step run."""
    root = tmp_path_factory.mktemp("resume")
    write_dataset(root / "data", scenes=40, frames=5, image_size=32, square=8, step_px=2, actions=3)
    train(root / "data", root / "straight", "training.max_steps=24", "training.checkpoint_every_steps=5")
    return root


def final_state(run_dir: Path) -> dict:
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    state.pop("config")  # holds the run folder and the resume setting, which differ by design
    return state


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(straight, sig):
    run_dir = straight / f"interrupted_{sig.name}"
    extra = ["training.max_steps=24", "training.checkpoint_every_steps=5"]
    if sig == signal.SIGTERM:  # preemption: saves last.pt after the current step
        interrupt(straight / "data", run_dir, logged_step(7), sig, *extra)
        saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        assert 7 <= saved["step"] < 18 and 0 < saved["batches_done"] < 18  # mid-epoch 0
    else:  # no chance to save: resume from step_0000010.pt and redo the steps after it
        interrupt(straight / "data", run_dir, lambda d: (d / "checkpoints" / "step_0000010.pt").is_file()
                  and logged_step(12)(d), sig, *extra)
        assert not (run_dir / "checkpoints" / "last.pt").exists()
    train(straight / "data", run_dir, *extra, "trainer.resume_from_checkpoint=latest")
    assert_same_state(final_state(straight / "straight"), final_state(run_dir))
    losses, resumed_losses = step_losses(straight / "straight"), step_losses(run_dir)
    assert sorted(losses) == sorted(resumed_losses) == list(range(1, 25))
    assert losses == resumed_losses


@pytest.mark.slow
def test_epoch_checkpoints_and_resume_from_one(straight):
    """laq-epoch{N}.ckpt after every checkpoint_every_epochs-th epoch, resumable by its path as the guide types it
    (relative to the run folder)."""
    run_dir = straight / "epochs"
    train(straight / "data", run_dir, "training.max_steps=36", "training.checkpoint_every_epochs=1",
          "training.checkpoint_every_steps=1000")
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["laq-epoch1.ckpt", "laq-epoch2.ckpt", "last.pt"]  # 18 steps per epoch
    epoch1 = checkpoint.load(run_dir / "checkpoints" / "laq-epoch1.ckpt")
    assert (epoch1["step"], epoch1["epoch"], epoch1["batches_done"]) == (18, 1, 0)
    result = train(straight / "data", run_dir, "training.max_steps=20", "training.checkpoint_every_epochs=1",
                   "training.checkpoint_every_steps=1000",
                   "trainer.resume_from_checkpoint=./checkpoints/laq-epoch1.ckpt")
    assert "Resumed from" in result.stdout and "laq-epoch1.ckpt at step 18" in result.stdout
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 20  # went on from step 18


def test_a_refused_checkpoint_stops_the_run_naming_it(straight):
    run_dir = straight / "foreign"
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"step": 99, "model": {}, "payload": Path("anything")}, run_dir / "checkpoints" / "last.pt")
    result = subprocess.run(command(straight / "data", run_dir, "training.max_steps=2",
                                    "trainer.resume_from_checkpoint=latest"),
                            env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "last.pt was refused by torch.load(weights_only=True)" in result.stderr and "PosixPath" in result.stderr
    assert not (run_dir / "checkpoints" / "step_0000002.pt").exists()  # it did not start from scratch


@pytest.mark.slow
def test_pruning_keeps_the_only_valid_checkpoint(straight):
    """keep_last=1 with a truncated step file newer than anything this run writes: the run resumes from the valid
    one, never deletes the file it wrote last nor the one it resumed from, and leaves the truncated one alone."""
    run_dir = straight / "prune"
    train(straight / "data", run_dir, "training.max_steps=6", "training.checkpoint_every_steps=2",
          "training.keep_last=1")
    ckpt = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "step_0000004.pt"]
    (ckpt / "last.pt").unlink()
    (ckpt / "step_0000050.pt").write_bytes((ckpt / "step_0000004.pt").read_bytes()[:300])  # truncated, "newer"
    train(straight / "data", run_dir, "training.max_steps=10", "training.checkpoint_every_steps=2",
          "training.keep_last=1", "trainer.resume_from_checkpoint=latest")
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["last.pt", "step_0000004.pt", "step_0000008.pt", "step_0000050.pt"]  # step 6 was pruned
    assert checkpoint.load(ckpt / "step_0000008.pt")["step"] == 8
