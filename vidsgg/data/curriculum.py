"""Easy-to-hard curriculum (`-curriculum easy_to_hard -curriculum_epochs 2,4`).

A video's difficulty is its number of relation labels per frame (attention + spatial + contacting labels over
all person-object pairs, divided by the frames): few objects with few relations are easy, crowded frames with
many simultaneous relations are hard. With boundaries b_1 < ... < b_n the training set is widened in n + 1
stages: before epoch b_1 (1-based epochs 1..b_1) the easiest 1/(n+1) of the videos, then 2/(n+1), ..., and from
epoch b_n + 1 on every video. The selection depends only on the annotations and the epoch, so a resumed run
sees the same subset.
"""
from __future__ import annotations

import math

from torch.utils.data import Dataset, Subset


def video_difficulty(gt_annotation: list) -> float:
    """Relation labels per frame of one Action Genome video (its `gt_annotation`, see ActionGenome)."""
    labels = sum(len(obj["attention_relationship"]) + len(obj["spatial_relationship"])
                 + len(obj["contacting_relationship"]) for frame in gt_annotation for obj in frame[1:])
    return labels / max(1, len(gt_annotation))


def stage_fraction(epoch: int, boundaries: list[int]) -> float:
    """Share of the videos used in 0-based `epoch` (1.0 without a curriculum)."""
    stage = sum(epoch >= b for b in boundaries)
    return (stage + 1) / (len(boundaries) + 1)


class Curriculum:
    """`subset(epoch)`: the whole dataset without boundaries, else the Subset of the easiest videos for that epoch
    (ties keep the dataset order). The ranking is computed once, from the annotations."""

    def __init__(self, dataset: Dataset, boundaries: list[int]):
        self.dataset, self.boundaries = dataset, list(boundaries)
        self.order: list[int] = []
        if self.boundaries:
            if not hasattr(dataset, "videos"):
                raise ValueError(f"-curriculum needs per-video annotations; {type(dataset).__name__} has none")
            difficulty = [video_difficulty(video["gt_annotation"]) for video in dataset.videos]
            self.order = sorted(range(len(difficulty)), key=lambda i: (difficulty[i], i))

    def subset(self, epoch: int) -> Dataset:
        if not self.boundaries:
            return self.dataset
        keep = max(1, math.ceil(stage_fraction(epoch, self.boundaries) * len(self.order)))
        return Subset(self.dataset, sorted(self.order[:keep]))
