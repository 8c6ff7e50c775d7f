"""Padding to a multiple of 32 (and back) and convex upsampling of 1/4-resolution disparity to full resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class InputPadder:
    """Replicate-pad (B, C, H, W) images so H and W are multiples of `divisor`; `unpad` crops back.

    Width is padded on both sides and height at the bottom (RAFT-Stereo's non-'sintel' mode): the pixels a
    stereo pair shares stay in the same rows.
    """

    def __init__(self, shape: torch.Size | tuple, divisor: int = 32):
        height, width = shape[-2:]
        pad_h = (-height) % divisor
        pad_w = (-width) % divisor
        self.pad = (pad_w // 2, pad_w - pad_w // 2, 0, pad_h)  # F.pad order: left, right, top, bottom
        self.height, self.width = height, width

    def pad_images(self, *images: torch.Tensor) -> list[torch.Tensor]:
        return [F.pad(image, self.pad, mode="replicate") for image in images]

    def unpad(self, tensor: torch.Tensor) -> torch.Tensor:
        """(..., H_padded, W_padded) -> (..., H, W)."""
        left, top = self.pad[0], self.pad[2]
        return tensor[..., top:top + self.height, left:left + self.width]


def convex_upsample(disp: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample (B, 1, h, w) disparity in low-resolution pixels to (B, 1, h·f, w·f) in full-resolution pixels.

    Each fine pixel is a softmax-weighted (convex) combination of the 3×3 coarse neighbours; mask is
    (B, 9·f·f, h, w) logits. Disparity values are multiplied by f.
    """
    batch, _, height, width = disp.shape
    weights = torch.softmax(mask.view(batch, 1, 9, factor, factor, height, width), dim=2)
    neighbours = F.unfold(factor * disp, kernel_size=3, padding=1).view(batch, 1, 9, 1, 1, height, width)
    fine = torch.sum(weights * neighbours, dim=2)  # (B, 1, f, f, h, w)
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(batch, 1, height * factor, width * factor)


def upsample_disparity(disp: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling of (B, 1, h, w) disparity, values scaled by `factor` (used for the initial d0)."""
    return factor * F.interpolate(disp, scale_factor=factor, mode="bilinear", align_corners=False)
