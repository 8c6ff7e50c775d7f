"""Compositing a shadow under its object, and the object | target | prediction | composite grids."""
from __future__ import annotations

import numpy as np
import torch

from common.viz import image_grid, to_uint8


def background(height: int, width: int) -> np.ndarray:
    """A light floor-like gradient (H, W, 3) float in [0, 1], so both the shadow and a white object show."""
    rows = np.linspace(0.78, 0.95, height, dtype=np.float32)[:, None, None]
    tint = np.array([1.0, 0.97, 0.92], np.float32)
    return np.broadcast_to(rows * tint, (height, width, 3)).copy()


def composite(object_image: torch.Tensor, mask: torch.Tensor, shadow: torch.Tensor,
              intensity: float = 1.0) -> np.ndarray:
    """object (3, H, W) in [-1, 1], mask (1, H, W) in {0, 1}, shadow strength (1, H, W) in [0, 1] ->
    (H, W, 3) uint8: background * (1 - intensity * shadow), with the object pasted on top through the mask."""
    obj = ((object_image.detach().float().cpu().permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    alpha = mask.detach().float().cpu()[0].numpy()[..., None]
    strength = shadow.detach().float().cpu()[0].numpy()[..., None]
    floor = background(*obj.shape[:2]) * (1 - intensity * strength)
    return to_uint8(alpha * obj + (1 - alpha) * floor)


def sample_grid(batch: dict, prediction: torch.Tensor, count: int = 4) -> np.ndarray:
    """One row per sample: object | target shadow | predicted shadow | composite with the prediction."""
    rows = []
    for i in range(min(count, prediction.shape[0])):
        rows.append([to_uint8(batch["object_image"][i], (-1.0, 1.0)), to_uint8(batch["shadow_map"][i]),
                     to_uint8(prediction[i]), composite(batch["object_image"][i], batch["mask"][i], prediction[i])])
    return image_grid(rows)
