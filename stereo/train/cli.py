"""Command-line pieces of the training script: value types for the guide's flags and the launcher check."""
from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The script was launched in a way that would not run what was asked for."""


def str2bool(value: str | bool) -> bool:
    """argparse type for the guide's boolean flags: true/false (also 1/0, yes/no); anything else is an error."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _int_at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def check_launch_environment() -> None:
    """Refuse launches that would silently run fewer processes than asked for.

    `accelerate launch --cpu --num_processes N` starts ONE process unless it goes through mpirun, and mpirun sets
    no torchrun variables: every process would train alone into the same workspace."""
    torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    mpi_size = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)
    if mpi_size > 1 and not torchrun:
        raise LaunchError(f"Launched by mpirun with {mpi_size} processes, which this script does not read; launch "
                           "with torchrun --nproc_per_node N or accelerate launch --multi_gpu --num_processes N.")
    if os.environ.get("ACCELERATE_USE_CPU") == "True" and "MASTER_ADDR" in os.environ and not torchrun:
        raise LaunchError("`accelerate launch --cpu --num_processes N` (N > 1) started one process: accelerate runs "
                           "several CPU processes only through mpirun. Use `accelerate launch --multi_gpu "
                           "--num_processes N scripts/train.py ...` (on a machine without GPUs the processes train "
                           "on the CPU with gloo), or torchrun --nproc_per_node N.")
    if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
        log.warning("accelerate's --mixed_precision %s is not read by this script: pass --enable_mixed_precision "
                    "true (dtype from the config's train.mixed_precision_dtype).",
                    os.environ["ACCELERATE_MIXED_PRECISION"])
