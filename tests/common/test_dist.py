import subprocess
import sys
from pathlib import Path

import torch

from common import dist

TINY_TRAIN = Path(__file__).with_name("tiny_train.py")


def test_setup_without_launcher_is_a_single_cpu_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    info = dist.setup(device="cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert info.device == torch.device("cpu")
    assert dist.all_reduce_mean(torch.tensor(3.0)).item() == 3.0
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.any_rank(False) is False and dist.any_rank(True) is True


def test_slurm_multi_task_without_master_addr_is_a_clear_error(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    try:
        dist.setup(device="cpu")
    except RuntimeError as exc:
        assert "MASTER_ADDR" in str(exc)
    else:
        raise AssertionError("expected a RuntimeError naming MASTER_ADDR")


def test_unwrap_removes_compile_and_ddp_wrappers():
    model = torch.nn.Linear(2, 2)

    class Compiled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert dist.unwrap(Compiled(model)) is model
    assert dist.unwrap(model) is model


def test_two_process_ddp_keeps_ranks_identical_and_only_rank0_writes(tmp_path):
    run_dir, dump_dir = tmp_path / "run", tmp_path / "dump"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TINY_TRAIN),
           "--run_dir", str(run_dir), "--steps", "12", "--save_every", "6", "--dump_dir", str(dump_dir)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    rank0, rank1 = (torch.load(dump_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    parameter_names = [n for n in rank0["model"] if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(parameter_names) == 6
    for name in parameter_names:
        assert torch.equal(rank0["model"][name], rank1["model"][name]), name
    assert rank0["mean_of_ranks"].item() == rank1["mean_of_ranks"].item() == 0.5
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000006.pt", "step_000012.pt"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "log.txt", "metrics.json", "tb"]
    assert len(list((run_dir / "tb").iterdir())) == 1  # one event file: rank 1 wrote none
