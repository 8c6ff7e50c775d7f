"""Seeding: one seed per rank, DataLoader worker seeding, per-sample generators, and an opt-in deterministic mode."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python, numpy and torch (all devices) with `seed + rank`; returns the seed used."""
    rank_seed = int(seed) + int(rank)
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    torch.manual_seed(rank_seed)
    return rank_seed


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: seed numpy and python from torch's per-worker seed (which the loader derives from
    its generator), so augmentations differ between workers and repeat between runs."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def loader_generator(seed: int) -> torch.Generator:
    """A torch.Generator for DataLoader(generator=...): fixes shuffling and the worker seeds, and keeps the loader
    off the global torch RNG. Without it, every `iter(loader)` draws the workers' base seed (and a RandomSampler
    its permutation) from the global RNG, which a resumed run has just restored and dropout then uses: the resumed
    run diverges. Give every DataLoader one (seeded per rank if the ranks should differ); reseed it per epoch
    (`generator.manual_seed(seed + epoch)`) when the worker seeds must repeat after a resume."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, sample index): random choices inside a Dataset repeat
    exactly after a resume, whichever worker draws the sample."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def set_deterministic(enabled: bool = True) -> None:
    """Opt-in bitwise reproducibility (slower): deterministic kernels, no cuDNN autotuning, no TF32."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cuda.matmul.allow_tf32 = not enabled
    torch.backends.cudnn.allow_tf32 = not enabled
