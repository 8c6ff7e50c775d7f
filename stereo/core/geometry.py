"""The lookup the GRUs read each iteration (reference: Combined_Geo_Encoding_Volume): around the current disparity
d, 2r+1 taps (spacing 1 px at that level) from two pyramids of `levels` levels (width halved by average pooling):

  geometry  the filtered cost volume itself, (C = 28 channels) sampled along disparity at d / 2^l + k;
  cosine    the all-pairs cosine correlation of the 1/4 features, sampled along the right row at (x - d) / 2^l + k.

Per pixel that is levels · (C + 1) · (2r + 1) channels (2 · 29 · 9 = 522 in the paper's configuration).

implementation "reg" stores the all-pairs correlation (B·H·W·W floats, as the reference); "alt" computes the
cosine taps on the fly from the (pooled) right features: the same numbers (correlation is linear in the right
features, and so are pooling and linear sampling), memory B·C·H·W·(2r+1) instead, which is smaller only for rows
wider than C·(2r+1) pixels at 1/4 resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ("reg", "alt")


def _sample_rows(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Linear sampling along the last axis with zero padding. rows (N, C, 1, W), x (N, 1, K, 1) pixel coordinates
    -> (N, C, 1, K). Reference: bilinear_sampler (grid_sample, align_corners=True)."""
    width = rows.shape[-1]
    grid = torch.cat([2 * x / (width - 1) - 1, torch.zeros_like(x)], dim=-1).to(rows.dtype)
    return F.grid_sample(rows, grid, align_corners=True)


class GeoEncodingLookup:
    """Built once per forward from the left/right 1/4 features (B, C_f, H, W) and the filtered volume
    (B, C, D, H, W), all fp32; `__call__(disp)` with disp (B, 1, H, W) in 1/4-res px -> (B, channels, H, W)."""

    def __init__(self, left: torch.Tensor, right: torch.Tensor, volume: torch.Tensor, levels: int = 2,
                 radius: int = 4, implementation: str = "reg"):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"correlation implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.levels, self.implementation = levels, implementation
        batch, channels, disp, height, width = volume.shape
        self.offsets = torch.linspace(-radius, radius, 2 * radius + 1, device=volume.device).reshape(1, 1, -1, 1)
        geometry = volume.permute(0, 3, 4, 1, 2).reshape(batch * height * width, channels, 1, disp)
        self.geometry = [geometry]
        for _ in range(levels - 1):
            self.geometry.append(F.avg_pool2d(self.geometry[-1], [1, 2], stride=[1, 2]))
        left, right = F.normalize(left.float(), dim=1), F.normalize(right.float(), dim=1)
        if implementation == "reg":
            corr = torch.einsum("aijk,aijh->ajkh", left, right).reshape(batch * height * width, 1, 1, width)
            self.corr = [corr]
            for _ in range(levels - 1):
                self.corr.append(F.avg_pool2d(self.corr[-1], [1, 2], stride=[1, 2]))
        else:
            self.left = left
            self.right = [right]  # (B, C_f, H, W / 2^l) normalised right features, pooled along the row
            for _ in range(levels - 1):
                self.right.append(F.avg_pool2d(self.right[-1], [1, 2], stride=[1, 2]))
        columns = torch.arange(width, dtype=torch.float, device=volume.device)
        self.columns = columns.reshape(1, 1, width, 1).repeat(batch, height, 1, 1).reshape(-1, 1, 1, 1)

    def _cosine_on_the_fly(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """<left(x), right_level(x_k)> for the taps x (B·H·W, 1, K, 1) -> (B·H·W, 1, 1, K)."""
        right = self.right[level]
        batch, channels, height, width = right.shape
        taps = x.shape[2]
        rows = right.permute(0, 2, 1, 3).reshape(batch * height, channels, 1, width)
        grid_x = x.reshape(batch, height, -1, 1).reshape(batch * height, 1, -1, 1)  # (B·H, 1, W·K, 1)
        sampled = _sample_rows(rows, grid_x).reshape(batch, height, channels, -1, taps)  # (B, H, C, W, K)
        left = self.left.permute(0, 2, 1, 3).unsqueeze(-1)  # (B, H, C, W, 1)
        return (sampled * left).sum(dim=2).reshape(-1, 1, 1, taps)

    def __call__(self, disp: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = disp.shape
        disp = disp.reshape(batch * height * width, 1, 1, 1)
        features = []
        for level in range(self.levels):
            scale = 2 ** level
            geometry = _sample_rows(self.geometry[level], self.offsets + disp / scale)
            x_right = self.columns / scale - disp / scale + self.offsets
            if self.implementation == "reg":
                cosine = _sample_rows(self.corr[level], x_right)
            else:
                cosine = self._cosine_on_the_fly(level, x_right)
            features += [geometry.reshape(batch, height, width, -1), cosine.reshape(batch, height, width, -1)]
        return torch.cat(features, dim=-1).permute(0, 3, 1, 2).contiguous()
