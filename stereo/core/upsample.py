"""Padding to a multiple of 32 (and back), and the 9-neighbour softmax upsampling of 1/4-resolution disparity."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class InputPadder:
    """Replicate-pad (B, C, H, W) tensors so H and W are multiples of `divisor`, half of the padding on each side
    (the reference demo's InputPadder(divis_by=32), mode 'sintel'); `unpad` crops back."""

    def __init__(self, shape: torch.Size | tuple, divisor: int = 32):
        height, width = shape[-2:]
        pad_h, pad_w = (-height) % divisor, (-width) % divisor
        self.pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # F.pad order: l, r, t, b
        self.height, self.width = height, width

    def pad_images(self, *images: torch.Tensor) -> list[torch.Tensor]:
        return [F.pad(image, self.pad, mode="replicate") for image in images]

    def unpad(self, tensor: torch.Tensor) -> torch.Tensor:
        """(..., H_padded, W_padded) -> (..., H, W)."""
        left, top = self.pad[0], self.pad[2]
        return tensor[..., top:top + self.height, left:left + self.width]


def context_upsample(disp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) disparity (already in full-resolution px) and (B, 9, 4h, 4w) softmax weights -> (B, 1, 4h, 4w):
    each fine pixel is the weighted sum of the 3×3 coarse neighbours of its coarse pixel."""
    batch, _, height, width = disp.shape
    neighbours = F.unfold(disp, 3, 1, 1).reshape(batch, 9, height, width)
    neighbours = F.interpolate(neighbours, (4 * height, 4 * width), mode="nearest")
    return (neighbours * weights).sum(dim=1, keepdim=True)
