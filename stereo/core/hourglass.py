"""3D filtering of the cost volume: a 3-level hourglass of axial-planar convolutions, plus the soft-argmin
initial disparity. Axial-planar = a (1,3,3) spatial conv then a (k,1,1) conv along disparity, each with BN
and ReLU: a long disparity receptive field at a fraction of a full 3D kernel's cost."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3d_bn_relu(in_ch: int, out_ch: int, kernel, stride=1, padding=0) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, kernel, stride, padding, bias=False), nn.BatchNorm3d(out_ch),
                         nn.ReLU(inplace=True))


class AxialBlock3d(nn.Module):
    """(B, C_in, D, H, W) -> (B, C_out, D, H, W): (1,3,3) spatial conv, then (k,1,1) along disparity."""

    def __init__(self, in_ch: int, out_ch: int, disp_kernel: int = 17):
        super().__init__()
        self.spatial = conv3d_bn_relu(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))
        self.disparity = conv3d_bn_relu(out_ch, out_ch, (disp_kernel, 1, 1), padding=(disp_kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.disparity(self.spatial(x))


class Hourglass(nn.Module):
    """(B, C, D, h, w) -> (B, C, D, h, w); three stride-2 levels, so D, h and w must be multiples of 8."""

    def __init__(self, channels: int, disp_kernel: int = 17):
        super().__init__()
        c1, c2, c3 = 2 * channels, 4 * channels, 6 * channels
        self.down1 = nn.Sequential(conv3d_bn_relu(channels, c1, 3, 2, 1), AxialBlock3d(c1, c1, disp_kernel))
        self.down2 = nn.Sequential(conv3d_bn_relu(c1, c2, 3, 2, 1), AxialBlock3d(c2, c2, disp_kernel))
        self.down3 = nn.Sequential(conv3d_bn_relu(c2, c3, 3, 2, 1), AxialBlock3d(c3, c3, disp_kernel))
        self.up3 = self._up(c3, c2)
        self.up2 = self._up(c2, c1)
        self.up1 = self._up(c1, channels)
        self.merge2 = nn.Sequential(conv3d_bn_relu(2 * c2, c2, 1), AxialBlock3d(c2, c2, disp_kernel))
        self.merge1 = nn.Sequential(conv3d_bn_relu(2 * c1, c1, 1), AxialBlock3d(c1, c1, disp_kernel))
        self.merge0 = conv3d_bn_relu(2 * channels, channels, 1)

    @staticmethod
    def _up(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(nn.ConvTranspose3d(in_ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm3d(out_ch),
                             nn.ReLU(inplace=True))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        level1 = self.down1(volume)
        level2 = self.down2(level1)
        level3 = self.down3(level2)
        up2 = self.merge2(torch.cat([self.up3(level3), level2], dim=1))
        up1 = self.merge1(torch.cat([self.up2(up2), level1], dim=1))
        return self.merge0(torch.cat([self.up1(up1), volume], dim=1))


class VolumeHeads(nn.Module):
    """Filtered volume -> matching cost logits (B, D, h, w) and the geometry volume (B, geo_dim, D, h, w)
    that the GRU looks up."""

    def __init__(self, channels: int, geo_dim: int = 8):
        super().__init__()
        self.cost = nn.Conv3d(channels, 1, 3, 1, 1)
        self.geometry = nn.Conv3d(channels, geo_dim, 3, 1, 1)

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cost(volume).squeeze(1), self.geometry(volume)


def soft_argmin(cost_logits: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) logits -> (B, 1, h, w) expected disparity Σ softmax(logits)_d · d, in 1/4-res pixels."""
    prob = F.softmax(cost_logits.float(), dim=1)
    bins = torch.arange(prob.shape[1], device=prob.device, dtype=prob.dtype).view(1, -1, 1, 1)
    return (prob * bins).sum(dim=1, keepdim=True)
