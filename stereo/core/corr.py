"""Correlation lookups for the GRU: at the current disparity, 2r+1 taps per pyramid level from
(a) the filtered geometry volume (sampled along disparity) and (b) the all-pairs cosine correlation between
left and right 1/4 features (sampled along the right image's x = x_left - d).

Two implementations of (b) give the same numbers:
  reg: the all-pairs volume (B, h, w, w) and its pooled levels are built once per forward, then sampled;
  alt: nothing is stored; the (pooled) right features are sampled at the taps and dotted with the left
       features every iteration. Correlation is linear in the right features, so pooling the volume along
       x_right equals correlating with pooled right features, and interpolating the volume equals
       correlating with interpolated features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ("reg", "alt")


def _taps(radius: int, device: torch.device) -> torch.Tensor:
    return torch.arange(-radius, radius + 1, device=device, dtype=torch.float32).view(1, -1, 1, 1)


def _linear_taps(positions: torch.Tensor, length: int):
    """The two taps of linear interpolation at fractional `positions` along an axis of `length` samples:
    yields (index clamped to [0, length-1], weight) twice; the weight is 0 where the tap falls outside."""
    base = positions.floor()
    frac = positions - base
    base = base.long()
    for offset, weight in ((0, 1.0 - frac), (1, frac)):
        index = base + offset
        inside = (index >= 0) & (index < length)
        yield index.clamp(0, length - 1), weight * inside


def sample_along(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of values (B, C, L, h, w) along L at positions (B, K, h, w) -> (B, C, K, h, w);
    positions outside [0, L-1] read zeros (as grid_sample's zero padding)."""
    batch, channels, length, height, width = values.shape
    out = 0
    for index, weight in _linear_taps(positions, length):
        index = index.unsqueeze(1).expand(batch, channels, -1, height, width)
        out = out + values.gather(2, index) * weight.unsqueeze(1)
    return out


def correlate_at(left: torch.Tensor, right: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Σ_c left(y, x) · right(y, p) with p = positions (B, K, h, w) interpolated along the right's x;
    left (B, C, h, w), right (B, C, h, W_r) -> (B, K, h, w). Zero outside the right image."""
    batch, channels, height, width = left.shape
    taps = positions.shape[1]
    out = 0
    for index, weight in _linear_taps(positions, right.shape[-1]):
        index = index.permute(0, 2, 1, 3).reshape(batch, 1, height, taps * width)
        sampled = right.gather(3, index.expand(batch, channels, height, taps * width))
        corr = (sampled.view(batch, channels, height, taps, width) * left.unsqueeze(3)).sum(dim=1)
        out = out + corr.permute(0, 2, 1, 3) * weight
    return out


class CorrelationLookup:
    """Built once per forward; `lookup(disp)` with disp (B, 1, h, w) in 1/4-res pixels returns
    (B, levels·(geo_dim+1)·(2r+1), h, w) features."""

    def __init__(self, geometry: torch.Tensor, left: torch.Tensor, right: torch.Tensor, levels: int = 2,
                 radius: int = 4, implementation: str = "reg"):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"correlation_implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.levels, self.radius, self.implementation = levels, radius, implementation
        with torch.autocast(device_type=left.device.type, enabled=False):
            geometry = geometry.float()
            # Cosine correlation: unit features, so values are in [-1, 1] at every level and precision.
            self.left = F.normalize(left.float(), dim=1)
            right = F.normalize(right.float(), dim=1)
            self.geometry = [geometry]
            for _ in range(1, levels):
                self.geometry.append(F.avg_pool3d(self.geometry[-1], (2, 1, 1), (2, 1, 1)))
            if implementation == "reg":
                corr = torch.einsum("bcyx,bcyz->bzyx", self.left, right).unsqueeze(1)  # (B, 1, W_r, h, w)
                self.corr = [corr]
                for _ in range(1, levels):
                    self.corr.append(F.avg_pool3d(self.corr[-1], (2, 1, 1), (2, 1, 1)))
            else:
                self.right = [right]
                for _ in range(1, levels):
                    self.right.append(F.avg_pool2d(self.right[-1], (1, 2), (1, 2)))

    def __call__(self, disp: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=disp.device.type, enabled=False):
            disp = disp.float()
            batch, _, height, width = disp.shape
            taps = _taps(self.radius, disp.device)
            x = torch.arange(width, device=disp.device, dtype=torch.float32).view(1, 1, 1, width)
            features = []
            for level in range(self.levels):
                scale = 2 ** level
                geo = sample_along(self.geometry[level], disp / scale + taps)
                features.append(geo.flatten(1, 2))
                positions = (x - disp) / scale + taps
                if self.implementation == "reg":
                    features.append(sample_along(self.corr[level], positions).flatten(1, 2))
                else:
                    features.append(correlate_at(self.left, self.right[level], positions))
            return torch.cat(features, dim=1)
