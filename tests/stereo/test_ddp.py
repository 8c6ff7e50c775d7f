"""Two CPU processes under torchrun (gloo): the DDP path (no_sync on accumulation steps, per-rank RNG states in the
checkpoint, rank-0-only writes) runs and saves one consistent checkpoint."""
import os
import subprocess
import sys

import pytest
import torch

from tests.stereo.conftest import make_config
from tests.stereo.test_train import SMALL_MODEL


@pytest.mark.slow
def test_two_process_training_with_accumulation(tmp_path, synth_dirs):
    config = make_config(tmp_path, *synth_dirs, model=SMALL_MODEL)
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "stereo.scripts.train", "--config", str(config), "--workspace", str(workspace),
               "--batch_size_forward", "1", "--gradient_accumulation_steps", "2", "--num_iterations", "2",
               "--save_every", "2", "--log_every", "1", "--enable_gradient_checkpointing", "false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(workspace / "checkpoint" / "00000002_optimizer.pt", weights_only=True)
    assert state["step"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # seed + rank
    assert (workspace / "metrics.json").is_file()
