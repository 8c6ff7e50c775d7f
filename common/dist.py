"""Distributed set-up from torchrun's (or SLURM's) environment, with a single-process fallback.

The same training code runs as `python train.py` (one process, no process group) and as
`torchrun --nproc_per_node=N train.py` (one process per device, gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_ranks() -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) from torchrun, else from SLURM (srun), else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        if "MASTER_ADDR" not in os.environ:
            raise RuntimeError(
                "Running under srun with several tasks but MASTER_ADDR is not set. Export MASTER_ADDR and "
                "MASTER_PORT in the sbatch script (see scripts/slurm/), or launch with torchrun."
            )
        rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        return rank, int(os.environ.get("SLURM_LOCALID", 0)), world
    return None


def setup(device: str | None = None, timeout_min: int = 30) -> DistInfo:
    """Initialise the process group if launched with several processes; pick this process's device.

    device: "cuda", "cpu" or None (CUDA when available).
    """
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but CUDA is not available on this machine.")
    ranks = _env_ranks()
    rank, local_rank, world_size = ranks if ranks else (0, 0, 1)
    if want_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend="nccl" if want_cuda else "gloo",
            timeout=timedelta(minutes=timeout_min),
            device_id=dev if want_cuda else None,
        )
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def is_initialized() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def is_main() -> bool:
    return not is_initialized() or torch_dist.get_rank() == 0


def barrier() -> None:
    if is_initialized():
        torch_dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor:
    """Mean of `value` over all ranks (a copy; the input is not modified). Works without a process group."""
    tensor = value.detach().clone() if torch.is_tensor(value) else torch.tensor(float(value))
    if is_initialized():
        tensor = tensor.to(_collective_device())  # nccl reduces CUDA tensors only
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= torch_dist.get_world_size()
    return tensor


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (e.g. codebook hit counts); a no-op without a process group."""
    if is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """True if `flag` is true on at least one rank (used for preemption and non-finite checks)."""
    if not is_initialized():
        return bool(flag)
    tensor = torch.tensor(1.0 if flag else 0.0, device=device or _collective_device())
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s value of a picklable object on every rank (e.g. so all ranks agree on one run folder)."""
    if not is_initialized():
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=src)
    return holder[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _collective_device() -> torch.device:
    if torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
