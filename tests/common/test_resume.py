"""Resume exactness and preemption, on the reference loop tests/common/tiny_train.py (real processes, real signals)."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint

TINY_TRAIN = Path(__file__).with_name("tiny_train.py")


def run_tiny(run_dir, *extra, check=True):
    cmd = [sys.executable, str(TINY_TRAIN), "--run_dir", str(run_dir), "--steps", "40", "--save_every", "10", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


def final_weights(run_dir):
    return checkpoint.load(Path(run_dir) / "checkpoints" / "step_000040.pt")["model"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_bitwise_identical_weights(tmp_path):
    run_tiny(tmp_path / "straight")
    killed = run_tiny(tmp_path / "killed", "--die_at_step", "23", check=False)
    assert killed.returncode == -signal.SIGKILL
    assert [s for s, _ in checkpoint.numbered(tmp_path / "killed" / "checkpoints", r"step_(\d+)\.pt")] == [10, 20]
    run_tiny(tmp_path / "killed", "--resume", "latest")  # 8 batches per epoch: resumes mid-epoch at step 20
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


@pytest.mark.slow
def test_sigterm_saves_at_the_current_step_and_exits_cleanly(tmp_path):
    result = run_tiny(tmp_path / "run", "--signal_at_step", "13")
    assert result.returncode == 0
    saved = [s for s, _ in checkpoint.numbered(tmp_path / "run" / "checkpoints", r"step_(\d+)\.pt")]
    assert saved == [10, 13]
    assert "Preempted: saved at step 13" in (tmp_path / "run" / "log.txt").read_text()
    run_tiny(tmp_path / "run", "--resume", "latest")
    run_tiny(tmp_path / "straight")
    for name, value in final_weights(tmp_path / "straight").items():
        assert torch.equal(value, final_weights(tmp_path / "run")[name]), name
