"""The hybrid cost volume at 1/4 resolution: group-wise cosine correlation (8 groups, fp32) next to the
concatenation of projected left and disparity-shifted right features; and soft-argmin disparity regression.

Disparity d pairs left pixel x with right pixel x - d; entries with x - d < 0 are 0 in the right-view parts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _shift_right(right: torch.Tensor, disp: int) -> torch.Tensor:
    """right(x - disp) along the last axis, zero where x < disp."""
    width = right.shape[-1]
    if disp >= width:
        return torch.zeros_like(right)
    return F.pad(right[..., :width - disp], (disp, 0))


def group_correlation_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int, groups: int) -> torch.Tensor:
    """(B, C, H, W) features -> (B, groups, D, H, W) in the features' dtype: per channel group, the cosine
    similarity of left(x) and right(x - d). Computed in fp32 with autocast off (reference: build_gwc_volume)."""
    batch, channels, height, width = left.shape
    if channels % groups:
        raise ValueError(f"feature channels ({channels}) must be divisible by the correlation groups ({groups})")
    with torch.autocast(device_type=left.device.type, enabled=False):
        left32 = F.normalize(left.float().reshape(batch, groups, channels // groups, height, width), dim=2)
        right32 = F.normalize(right.float().reshape(batch, groups, channels // groups, height, width), dim=2)
        # One product per disparity, zero-padded and stacked (in-place writes into a preallocated volume would make
        # autograd copy the whole volume gradient once per disparity).
        slices = [F.pad((left32[..., d:] * right32[..., :width - d]).sum(dim=2), (d, 0)) if d < width
                  else left32.new_zeros(batch, groups, height, width) for d in range(num_disp)]
    return torch.stack(slices, dim=2).to(left.dtype)


def concat_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(B, C, H, W) projected features -> (B, 2C, D, H, W): [left(x), right(x - d)] (reference: build_concat_volume;
    the left half is not masked)."""
    left_part = left.unsqueeze(2).expand(-1, -1, num_disp, -1, -1)
    right_part = torch.stack([_shift_right(right, d) for d in range(num_disp)], dim=2)
    return torch.cat([left_part, right_part], dim=1)


def disparity_regression(prob: torch.Tensor) -> torch.Tensor:
    """Soft-argmin: (B, D, H, W) probabilities -> (B, 1, H, W) expected disparity in volume bins (1/4-res px)."""
    values = torch.arange(prob.shape[1], dtype=prob.dtype, device=prob.device).view(1, -1, 1, 1)
    return torch.sum(prob * values, dim=1, keepdim=True)
