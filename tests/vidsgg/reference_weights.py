"""The deterministic weights rule of the reference-equivalence fixtures (tests/vidsgg/fixtures/README.md).

Every tensor of a reference state dict is a function of its key and shape alone, so weights too large to store
(~100–220 M parameters per paper-size model) are regenerated from the fixture's key/shape manifest. With
u ~ U(-1, 1) drawn by a torch.Generator seeded with crc32(key) (float64, then float32):
    num_batches_tracked -> 0;  running_var -> 1 + 0.5·u;  running_mean -> 0.1·u;
    ≥ 2-D (weights, embeddings, priors, memories) -> u·sqrt(3 / prod(shape[1:]))  (unit variance per output);
    1-D "weight" (norm scales) -> 1 + 0.1·u;  other 1-D (biases) -> 0.1·u.
"""
from __future__ import annotations

import math
import zlib

import torch


def rule_tensor(key: str, shape) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    u = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    if leaf == "running_var":
        value = 1 + 0.5 * u
    elif leaf == "running_mean":
        value = 0.1 * u
    elif len(shape) >= 2:
        value = u * math.sqrt(3 / math.prod(shape[1:]))
    elif leaf == "weight":
        value = 1 + 0.1 * u
    else:
        value = 0.1 * u
    return value.float()


def rule_state_dict(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """{key: shape} -> {key: tensor} by the rule."""
    return {key: rule_tensor(key, shape) for key, shape in manifest.items()}
