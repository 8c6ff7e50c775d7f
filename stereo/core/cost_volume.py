"""Cost volume at 1/4 resolution: 8-group correlation of L2-normalised features (fp32) concatenated with
1×1-projected left/right features, then a 3D stem gated by the left features (feature attention)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.core.hourglass import AxialBlock3d


def group_correlation(left: torch.Tensor, right: torch.Tensor, num_disp: int, groups: int) -> torch.Tensor:
    """(B, C, H, W) features -> (B, groups, D, H, W): mean over each channel group of left(x)·right(x - d).

    Computed in fp32 with autocast off (bf16 dot products of normalised features lose the small differences
    between neighbouring disparities). Entries with x - d < 0 are 0.
    """
    batch, channels, height, width = left.shape
    if channels % groups:
        raise ValueError(f"feature channels ({channels}) must be divisible by the correlation groups ({groups})")
    with torch.autocast(device_type=left.device.type, enabled=False):
        left = F.normalize(left.float(), dim=1).view(batch, groups, channels // groups, height, width)
        right = F.normalize(right.float(), dim=1).view(batch, groups, channels // groups, height, width)
        # One (B, G, h, w - d) product per disparity, zero-padded on the left and stacked: no in-place writes
        # into a preallocated volume, whose backward would copy the whole volume gradient once per d.
        slices = [F.pad((left[..., d:] * right[..., :width - d]).mean(dim=2), (d, 0)) if d < width
                  else left.new_zeros(batch, groups, height, width) for d in range(num_disp)]
        volume = torch.stack(slices, dim=2)
    return volume


def concat_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int) -> torch.Tensor:
    """(B, C, H, W) projected features -> (B, 2C, D, H, W): [left(x), right(x - d)], 0 where x - d < 0."""
    batch, channels, height, width = left.shape
    # right(x - d) for all d as one strided view: window i of the left-padded row starts at x - (D-1-i).
    padded = F.pad(right, (num_disp - 1, 0))
    shifted = padded.unfold(-1, width, 1).flip(-2).permute(0, 1, 3, 2, 4)  # (B, C, D, h, w)
    valid = torch.arange(width, device=left.device).view(1, -1) >= torch.arange(num_disp, device=left.device).view(-1, 1)
    left_part = left.unsqueeze(2) * valid.view(1, 1, num_disp, 1, width).to(left.dtype)
    return torch.cat([left_part, shifted], dim=1)


class CostVolume(nn.Module):
    """left/right 1/4 features (B, C, h, w) -> stem volume (B, volume_dim, max_disp/4, h, w)."""

    def __init__(self, feature_dim: int, max_disp: int, groups: int = 8, concat_dim: int = 12,
                 volume_dim: int = 32, disp_kernel: int = 17):
        super().__init__()
        self.num_disp = max_disp // 4
        self.groups = groups
        self.project = nn.Sequential(nn.Conv2d(feature_dim, concat_dim, 1, bias=False), nn.BatchNorm2d(concat_dim))
        self.stem = nn.Sequential(
            nn.Conv3d(groups + 2 * concat_dim, volume_dim, 3, 1, 1, bias=False), nn.BatchNorm3d(volume_dim),
            nn.ReLU(inplace=True), AxialBlock3d(volume_dim, volume_dim, disp_kernel))
        self.attention = nn.Conv2d(feature_dim, volume_dim, 1)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        gwc = group_correlation(left, right, self.num_disp, self.groups).to(left.dtype)
        concat = concat_volume(self.project(left), self.project(right), self.num_disp)
        volume = self.stem(torch.cat([gwc, concat], dim=1))
        # Feature attention: the left image decides which volume channels matter at each pixel.
        return volume * torch.sigmoid(self.attention(left)).unsqueeze(2)
