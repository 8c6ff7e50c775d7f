"""Frame-pair datasets over discovered scenes: scene level (a new random pair per scene each epoch) and pair level
(every valid (scene, t, offset), precomputed).

Every item is a dict:
    first   float32 (3, S, S) in [0, 1]   frame t (squashed to S x S, S = data.image_size)
    future  float32 (3, S, S) in [0, 1]   frame t + offset
    offset  int64 ()                      frames between them (> 0; < 0 for a time-reversed pair, data.reverse)
    label   int64 ()                      action label id from the CSV `label` column, -1 when there is none
    scene   int64 ()                      index of the scene in the dataset's scene list
or a `common.data.SkippedSample` when a frame cannot be read (strict mode raises BadSampleError instead).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.data import BadSampleError, BadSamplePolicy, image_to_tensor, read_image
from common.seed import sample_rng
from laq.data.scenes import Scene


def augment_pair(first: torch.Tensor, future: torch.Tensor, rng: np.random.Generator,
                 min_scale: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop (side min_scale..1 of the frame, anywhere) resized back to (S, S), and the same random
    horizontal flip, applied to both frames (3, S, S): the change between them stays a real change."""
    size = first.shape[-1]
    side = int(round(size * rng.uniform(min_scale, 1.0)))
    top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
    flip = bool(rng.integers(2))
    pair = torch.stack([first, future])[:, :, top:top + side, left:left + side]
    if side != size:
        pair = F.interpolate(pair, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if flip:
        pair = pair.flip(-1)
    return pair[0].clamp(0, 1), pair[1].clamp(0, 1)


class _PairReader(Dataset):
    """reverse: also serve every pair backwards in time (first = frame t + offset, future = frame t, offset < 0).
    augment: the same random crop-and-resize and horizontal flip on both frames, drawn from (seed, epoch, index).
    On small data both stop the decoder from predicting the future from a memorised frame t (one frame then has
    several futures, and no frame repeats exactly), so the codes must carry the change; see laq/README.md,
    "Small data"."""

    def __init__(self, scenes: Sequence[Scene], offsets: Sequence[int], image_size: int, labels: dict[str, int],
                 strict: bool = False, reverse: bool = False, augment: bool = False, seed: int = 0):
        if not offsets or any(int(o) <= 0 for o in offsets):
            raise ValueError(f"data.offsets must be positive integers, got {list(offsets)}")
        self.reverse, self.augment, self.seed, self.epoch = bool(reverse), bool(augment), int(seed), 0
        self.scenes = list(scenes)
        self.offsets = sorted(int(o) for o in offsets)
        self.image_size = int(image_size)
        self.labels = labels
        self.policy = BadSamplePolicy(strict)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _item(self, scene_index: int, start: int, offset: int, index: int):
        scene = self.scenes[scene_index]
        paths = (scene.frames[start], scene.frames[start + offset])
        images = []
        for path in paths:
            try:
                images.append(image_to_tensor(read_image(path, self.image_size)))
            except BadSampleError as exc:
                return self.policy.handle(path, exc)
        first, future = images
        if self.augment:
            first, future = augment_pair(first, future, np.random.default_rng([self.seed, self.epoch, index, 1]))
        label = self.labels.get(scene.label, -1) if scene.label is not None else -1
        return {"first": first, "future": future, "offset": torch.tensor(offset), "label": torch.tensor(label),
                "scene": torch.tensor(scene_index)}


class SceneDataset(_PairReader):
    """`draws` items per scene (1 for training: length = number of scenes); item i is scene i // draws with
    start ~ U[0, n-1-offset] and offset ~ U(offsets valid for the scene), drawn from
    sample_rng(seed, epoch * draws + i % draws, scene): a new pair each epoch, the same after a resume, never clamped
    (so never two identical frames). Validation uses draws = K fixed pairs per held-out scene (epoch stays 0).
    Scenes shorter than min(offsets)+1 must be filtered out beforehand."""

    def __init__(self, scenes, offsets, image_size, labels, seed: int = 0, strict: bool = False, draws: int = 1,
                 reverse: bool = False, augment: bool = False):
        super().__init__(scenes, offsets, image_size, labels, strict, reverse, augment, seed)
        if int(draws) < 1:
            raise ValueError(f"data.val_draws_per_scene must be >= 1, got {draws}")
        self.draws = int(draws)
        short = [s.folder for s in self.scenes if len(s.frames) <= self.offsets[0]]
        if short:
            raise ValueError(f"Scenes shorter than the smallest offset {self.offsets[0]} + 1: {short[:3]}")

    def __len__(self) -> int:
        return len(self.scenes) * self.draws

    def draw(self, index: int) -> tuple[int, int]:
        """(start, offset) of item `index` (scene index // draws) in the current epoch."""
        scene = index // self.draws
        rng = sample_rng(self.seed, self.epoch * self.draws + index % self.draws, scene)
        n = len(self.scenes[scene].frames)
        valid = [o for o in self.offsets if o <= n - 1]
        offset = valid[int(rng.integers(len(valid)))]
        start = int(rng.integers(0, n - offset))  # in [0, n-1-offset]
        if self.reverse and rng.integers(2):
            return start + offset, -offset
        return start, offset

    def __getitem__(self, index: int):
        start, offset = self.draw(index)
        return self._item(index // self.draws, start, offset, index)


class PairDataset(_PairReader):
    """Every (scene, t, offset) with t + offset < n, in a fixed order: n - offset pairs per scene and offset
    (100 frames with offsets [15, 30, 60] -> 85 + 70 + 40 = 195)."""

    def __init__(self, scenes, offsets, image_size, labels, strict: bool = False, reverse: bool = False,
                 augment: bool = False, seed: int = 0):
        super().__init__(scenes, offsets, image_size, labels, strict, reverse, augment, seed)
        self.pairs = [(i, t, o) for i, scene in enumerate(self.scenes) for o in self.offsets
                      for t in range(len(scene.frames) - o)]
        if self.reverse:
            self.pairs += [(i, t + o, -o) for i, t, o in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        return self._item(*self.pairs[index], index)


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
