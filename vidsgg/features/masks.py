"""The two-channel soft spatial masks of STTran (`draw_union_boxes`), vectorised.

For a (subject, object) pair, both boxes are expressed in the frame of their union box, scaled to a
`size`×`size` grid [low, high) per axis; cell j of an axis gets clamp(j+1−low, 0, 1)·clamp(high−j, 0, 1) (the
product of the two overlap factors, as the reference's draw_union_boxes: equal to the covered length except in a
cell that holds both box edges, i.e. boxes thinner than a cell), a cell the product of its two axes, and 0.5 is
subtracted as the reference does.
"""
from __future__ import annotations

import torch


def _coverage(low: torch.Tensor, high: torch.Tensor, size: int) -> torch.Tensor:
    """(P,) interval ends in grid units -> (P, size) overlap factor of each unit cell, in [0, 1]."""
    cells = torch.arange(size, dtype=low.dtype, device=low.device)
    return (cells + 1 - low[:, None]).clamp(0.0, 1.0) * (high[:, None] - cells).clamp(0.0, 1.0)


def spatial_masks(subject_boxes: torch.Tensor, object_boxes: torch.Tensor, size: int = 27,
                  offset: float = 0.5) -> torch.Tensor:
    """(P,4), (P,4) xyxy px -> (P, 2, size, size) float32: channel 0 subject, channel 1 object, minus `offset`."""
    subject_boxes, object_boxes = subject_boxes.float(), object_boxes.float()
    union_low = torch.minimum(subject_boxes[:, :2], object_boxes[:, :2])
    union_high = torch.maximum(subject_boxes[:, 2:], object_boxes[:, 2:])
    scale = size / (union_high - union_low).clamp_min(1e-6)  # (P, 2): grid cells per pixel in x and y
    channels = []
    for boxes in (subject_boxes, object_boxes):
        low = (boxes[:, :2] - union_low) * scale
        high = (boxes[:, 2:] - union_low) * scale
        cover_x = _coverage(low[:, 0], high[:, 0], size)
        cover_y = _coverage(low[:, 1], high[:, 1], size)
        channels.append(cover_y[:, :, None] * cover_x[:, None, :])
    return torch.stack(channels, dim=1) - offset


def union_boxes(subject_boxes: torch.Tensor, object_boxes: torch.Tensor) -> torch.Tensor:
    """(P,4), (P,4) xyxy -> (P,4) the smallest box holding both."""
    return torch.cat([torch.minimum(subject_boxes[:, :2], object_boxes[:, :2]),
                      torch.maximum(subject_boxes[:, 2:], object_boxes[:, 2:])], dim=1)
