"""NSVQ under DDP (2 processes, gloo): replacement decisions and codebooks stay identical across ranks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).resolve().parent / "ddp_nsvq_check.py"


@pytest.mark.slow
def test_replacement_keeps_ranks_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(HELPER), str(tmp_path)], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["replaced"] == rank1["replaced"] and rank0["replaced"][0] == 7
    for key, value in rank0["state"].items():
        if key == "vq.recent_inputs":
            continue  # each rank's own last batch; only rank 0's is ever used (it draws, then broadcasts)
        assert torch.equal(value, rank1["state"][key]), f"{key} differs between ranks"
    codebook = rank0["state"]["vq.codebooks"]
    assert torch.unique(codebook, dim=0).shape[0] == codebook.shape[0]  # replaced codes are distinct
