"""What differs between datasets, for train.py and test.py: the dataset class, sample -> entry, evaluation.
Action Genome's pieces live in vidsgg/passes.py, EASG's in vidsgg/easg/task.py (which builds on passes.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vidsgg import passes
from vidsgg.data.action_genome import ActionGenome
from vidsgg.easg import task as easg


@dataclass(frozen=True)
class Task:
    dataset: type            # (root, split, mode, datasize) -> dataset
    prepare_entry: Callable  # (sample, mode, store, device, training, detections) -> entry
    evaluate: Callable       # (model, dataset, store, mode, device, mean_recall, detections, max_videos, strict)


def task_for(dataset: str) -> Task:
    if dataset == "easg":
        return Task(easg.Dataset, easg.prepare_entry, easg.evaluate)
    return Task(ActionGenome, passes.prepare_entry, passes.evaluate)
