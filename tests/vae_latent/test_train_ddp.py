"""Two CPU processes (gloo): synchronised BatchNorm is exact; `python train_ddp.py` starts one process per GPU by
re-launching itself through torchrun's API, and DDP training keeps the ranks identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint

from vae_latent.launch import processes_to_launch

ROOT = Path(__file__).resolve().parents[2]
# `python vae_latent/train_ddp.py ARGS` on a machine that reports two GPUs: the re-launch decision sees 2 devices,
# the two workers it starts see none (this machine has no GPU) and train on the CPU with gloo.
TWO_GPU_LAUNCH = ("import runpy, sys, torch; torch.cuda.device_count = lambda: 2; "
                  "sys.argv = ['vae_latent/train_ddp.py', *sys.argv[1:]]; "
                  "runpy.run_path('vae_latent/train_ddp.py', run_name='__main__')")


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


@pytest.mark.parametrize("gpus,visible,launched,expected", [
    (-1, 0, False, 1), (-1, 1, False, 1), (-1, 4, False, 4), (2, 4, False, 2), (0, 4, False, 1),
    (-1, 4, True, 1), (3, 4, True, 1)])
def test_how_many_processes_train_ddp_starts(gpus, visible, launched, expected):
    assert processes_to_launch(gpus, visible, launched) == expected


def test_asking_for_more_gpus_than_visible_is_an_error():
    with pytest.raises(ValueError, match="trainer_params.gpus=4, but 2 GPU"):
        processes_to_launch(4, 2, False)


@pytest.mark.slow
def test_train_ddp_starts_one_process_per_gpu_and_keeps_ranks_identical(frames_data, config_for, tmp_path):
    # 20 training frames over 2 ranks, batch 4 per rank: 2 steps per epoch, 3 epochs. No torchrun and no
    # WORLD_SIZE: train_ddp.py itself starts the two processes (trainer_params.gpus -1, two "visible" GPUs).
    config = config_for(frames_data, data_params={"frames_per_video": "all"},
                        trainer_params={"max_epochs": 3, "gpus": -1})
    dump = tmp_path / "ranks"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    result = subprocess.run([sys.executable, "-c", TWO_GPU_LAUNCH, "--config", str(config), "--dump_rank_state",
                             str(dump)], cwd=ROOT, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "starting 2 training processes, one per GPU" in result.stdout
    assert "2 process(es) on cpu" in result.stdout
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:  # buffers included: DDP does not re-broadcast them, the synchronised BN keeps them equal
        assert torch.equal(rank0[key], rank1[key]), key
    final = checkpoint.load(tmp_path / "logs_vae/run/checkpoints/vae_final.pt")
    assert final["step"] == 6 and final["epoch"] == 3
    assert torch.equal(final["model"]["encoder.0.1.running_mean"], rank1["encoder.0.1.running_mean"])
    assert not torch.equal(rank0["encoder.0.1.running_mean"], torch.zeros_like(rank0["encoder.0.1.running_mean"]))
    assert (tmp_path / "logs_vae/run/metrics.json").is_file()
