"""Two CPU processes under torchrun (gloo): synchronised BatchNorm is exact, and DDP training keeps ranks identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint

ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_synchronised_batchnorm_equals_full_batch_batchnorm(tmp_path):
    torchrun(ROOT / "tests/vae_latent/sync_bn_worker.py", tmp_path)
    for rank in (0, 1):
        errors = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert max(errors.values()) < 1e-4, (rank, errors)


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical(frames_data, config_for, tmp_path):
    # 20 training frames over 2 ranks, batch 4 per rank: 2 steps per epoch, 3 epochs.
    config = config_for(frames_data, data_params={"frames_per_video": "all"}, trainer_params={"max_epochs": 3})
    dump = tmp_path / "ranks"
    result = torchrun("vae_latent/train_ddp.py", "--config", config, "--dump_rank_state", dump)
    assert "2 process(es)" in result.stdout
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:  # buffers included: DDP does not re-broadcast them, the synchronised BN keeps them equal
        assert torch.equal(rank0[key], rank1[key]), key
    final = checkpoint.load(tmp_path / "logs_vae/run/checkpoints/vae_final.pt")
    assert final["step"] == 6 and final["epoch"] == 3
    assert torch.equal(final["model"]["encoder.0.1.running_mean"], rank1["encoder.0.1.running_mean"])
    assert not torch.equal(rank0["encoder.0.1.running_mean"], torch.zeros_like(rank0["encoder.0.1.running_mean"]))
    assert (tmp_path / "logs_vae/run/metrics.json").is_file()
