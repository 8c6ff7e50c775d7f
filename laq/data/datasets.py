"""Frame-pair datasets over discovered scenes: scene level (a new random pair per scene each epoch) and pair level
(every valid (scene, t, offset), precomputed).

Every item is a dict:
    first   float32 (3, S, S) in [0, 1]   frame t (squashed to S x S, S = data.image_size)
    future  float32 (3, S, S) in [0, 1]   frame t + offset
    offset  int64 ()                      frames between them (> 0)
    label   int64 ()                      action label id from the CSV `label` column, -1 when there is none
    scene   int64 ()                      index of the scene in the dataset's scene list
or a `common.data.SkippedSample` when a frame cannot be read (strict mode raises BadSampleError instead).
"""
from __future__ import annotations

import random
from typing import Sequence

import torch
from torch.utils.data import Dataset

from common.data import BadSampleError, BadSamplePolicy, image_to_tensor, read_image
from common.seed import sample_rng
from laq.data.scenes import Scene


class _PairReader(Dataset):
    def __init__(self, scenes: Sequence[Scene], offsets: Sequence[int], image_size: int, labels: dict[str, int],
                 strict: bool = False):
        if not offsets or any(int(o) <= 0 for o in offsets):
            raise ValueError(f"data.offsets must be positive integers, got {list(offsets)}")
        self.scenes = list(scenes)
        self.offsets = sorted(int(o) for o in offsets)
        self.image_size = int(image_size)
        self.labels = labels
        self.policy = BadSamplePolicy(strict)

    def _item(self, scene_index: int, start: int, offset: int):
        scene = self.scenes[scene_index]
        paths = (scene.frames[start], scene.frames[start + offset])
        images = []
        for path in paths:
            try:
                images.append(image_to_tensor(read_image(path, self.image_size)))
            except BadSampleError as exc:
                return self.policy.handle(path, exc)
        first, future = images
        label = self.labels.get(scene.label, -1) if scene.label is not None else -1
        return {"first": first, "future": future, "offset": torch.tensor(offset), "label": torch.tensor(label),
                "scene": torch.tensor(scene_index)}


class SceneDataset(_PairReader):
    """Length = number of scenes; item i is scene i with start ~ U[0, n-1-offset] and offset ~ U(offsets valid
    for the scene), drawn from sample_rng(seed, epoch, i): a new pair each epoch, the same after a resume, never
    clamped (so never two identical frames). Scenes shorter than min(offsets)+1 must be filtered out beforehand."""

    def __init__(self, scenes, offsets, image_size, labels, seed: int = 0, strict: bool = False):
        super().__init__(scenes, offsets, image_size, labels, strict)
        self.seed, self.epoch = int(seed), 0
        short = [s.folder for s in self.scenes if len(s.frames) <= self.offsets[0]]
        if short:
            raise ValueError(f"Scenes shorter than the smallest offset {self.offsets[0]} + 1: {short[:3]}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.scenes)

    def draw(self, index: int) -> tuple[int, int]:
        """(start, offset) of scene `index` in the current epoch."""
        rng = sample_rng(self.seed, self.epoch, index)
        n = len(self.scenes[index].frames)
        valid = [o for o in self.offsets if o <= n - 1]
        offset = valid[int(rng.integers(len(valid)))]
        return int(rng.integers(0, n - offset)), offset  # start in [0, n-1-offset]

    def __getitem__(self, index: int):
        start, offset = self.draw(index)
        return self._item(index, start, offset)


class PairDataset(_PairReader):
    """Every (scene, t, offset) with t + offset < n, in a fixed order: n - offset pairs per scene and offset
    (100 frames with offsets [15, 30, 60] -> 85 + 70 + 40 = 195)."""

    def __init__(self, scenes, offsets, image_size, labels, strict: bool = False):
        super().__init__(scenes, offsets, image_size, labels, strict)
        self.pairs = [(i, t, o) for i, scene in enumerate(self.scenes) for o in self.offsets
                      for t in range(len(scene.frames) - o)]

    def set_epoch(self, epoch: int) -> None:
        pass  # fixed pairs; the sampler reshuffles them

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        return self._item(*self.pairs[index])


class SubsetWithEpoch(Dataset):
    """`max_samples` items chosen by random.Random(sampling_seed) (not the first N); passes set_epoch through."""

    def __init__(self, dataset, max_samples: int, sampling_seed: int):
        self.dataset = dataset
        count = min(int(max_samples), len(dataset))
        self.indices = sorted(random.Random(int(sampling_seed)).sample(range(len(dataset)), count))

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]
