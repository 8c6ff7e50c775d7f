"""The two cheap baselines every shadow metric is reported beside.

- mean shadow (`shadow.metrics.MeanShadow`): one map for every input; it ignores both the object and the light.
- per-light: the mean shadow map of the k training samples whose light is nearest. It knows the light but not the
  object, so a model that beats it uses the object, and its sensitivity to the light is what knowing only the
  light buys.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import torch

from common.data import BadSampleError
from shadow.scene import LIGHT_RADIUS

log = logging.getLogger(__name__)
NEAREST_LIGHTS = 16  # training samples averaged per query light
CACHE_SIZE = 256  # query lights whose map is kept (the three tracks together have 30 lights)


def light_features(lights: np.ndarray) -> np.ndarray:
    """(N, 3) [θ deg, φ deg, size] -> (N, 4) [light centre x, y, z, size], all in world units: Euclidean distance
    between these is the distance between the two square lights (φ is meaningless at θ = 0, and it is here)."""
    theta, phi = np.radians(lights[:, 0]), np.radians(lights[:, 1])
    centre = LIGHT_RADIUS * np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    return np.concatenate([centre, lights[:, 2:3]], 1)


class PerLightBaseline:
    """Mean shadow map of the `k` training samples with the nearest light (see `light_features`).

    `dataset` needs `lights()` -> (N, 3) [θ, φ, size] and `shadow_map(i)` -> (1, H, W); both dataset classes of
    `shadow.data` have them. Only the shadow maps of the neighbours of the lights asked for are read."""

    def __init__(self, dataset, k: int = NEAREST_LIGHTS):
        if len(dataset) == 0:
            raise ValueError("The per-light baseline needs at least one training sample.")
        self.dataset, self.k = dataset, min(k, len(dataset))
        self.features = light_features(dataset.lights())
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bad: set[int] = set()

    def map_for(self, theta: float, phi: float, size: float) -> torch.Tensor:
        """(1, H, W) mean of the nearest training shadows for one light (unreadable samples are passed over)."""
        key = (round(float(theta), 4), round(float(phi), 4), round(float(size), 4))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        query = light_features(np.array([key], np.float64))[0]
        order = np.argsort(np.linalg.norm(self.features - query, axis=1), kind="stable")
        maps = []
        for index in order:
            if len(maps) == self.k:
                break
            if int(index) in self._bad:
                continue
            try:
                maps.append(self.dataset.shadow_map(int(index)))
            except BadSampleError as exc:
                log.warning("Per-light baseline passes over an unreadable training sample: %s", exc)
                self._bad.add(int(index))
        if not maps:
            raise ValueError("The per-light baseline found no readable training shadow map.")
        mean = torch.stack(maps).mean(0)
        self._cache[key] = mean
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return mean

    def __call__(self, theta: torch.Tensor, phi: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """(B,) light parameters -> (B, 1, H, W) on the device of `theta`."""
        maps = [self.map_for(a, b, c) for a, b, c in zip(theta.tolist(), phi.tolist(), size.tolist())]
        return torch.stack(maps).to(theta.device)
