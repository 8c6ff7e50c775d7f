"""A DistributedSampler that can start part-way into an epoch, so a resumed run sees exactly the batches the
interrupted run had not reached yet (without loading and discarding the ones before)."""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler (works with one process too) plus `start_at(n)`: skip this rank's first n indices of
    the current epoch. The skip applies to one epoch only; `set_epoch` clears it."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.skip = 0

    def start_at(self, samples_done: int) -> None:
        self.skip = int(samples_done)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
