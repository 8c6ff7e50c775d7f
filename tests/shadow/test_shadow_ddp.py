"""Two-process DDP training on CPU (gloo) through torchrun: both ranks agree and rank 0 writes the run folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint
from shadow.synth import write_dataset

TRAIN = Path(__file__).resolve().parents[2] / "shadow" / "train.py"


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    data = write_dataset(tmp_path / "data", 20, image_size=32)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TRAIN),
         "--data_dir", str(data), "--image_size", "32", "--batch_size", "2", "--mixed_precision", "no",
         "--num_workers", "0", "--max_iterations", "3", "--save_every", "3", "--eval_every", "3",
         "--log_every", "1", "--output_dir", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size=2" in (out / "training.log").read_text()
    state = checkpoint.load(out / "checkpoint_3.pt")
    assert state["step"] == 3 and len(state["rng"]) == 2  # each rank's RNGs, its noise generator among them
    noise = [rank["generators"]["noise"] for rank in state["rng"]]
    assert not torch.equal(noise[0], noise[1])
    assert "val/iou" in json.loads((out / "metrics.json").read_text())
