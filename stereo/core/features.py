"""CNN feature network: a 5-stage residual encoder (1/2 ... 1/32) with a top-down decoder back to 1/4.

It gives the matching features of both views at 1/4 resolution and, for the left view, the 1/4, 1/8 and
1/16 decoder maps that the context network turns into GRU states. Input: ImageNet-normalised RGB.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """Two 3×3 conv+BN layers with a (strided 1×1) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch, out_ch, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class UpFuse(nn.Module):
    """Upsample a coarse map ×2 (transposed conv) and fuse it with the skip map of the finer level."""

    def __init__(self, coarse_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(coarse_ch, out_ch, 4, 2, 1, bias=False),
                                nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))
        self.fuse = conv_bn_relu(out_ch + skip_ch, out_ch)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([up, skip], dim=1))


class FeatureNet(nn.Module):
    """images (B, 3, H, W) -> {"match": (B, feature_dim, H/4, W/4), "pyramid": [1/4, 1/8, 1/16 decoder maps]}.

    `channels` are the encoder widths at 1/2, 1/4, 1/8, 1/16, 1/32 (edgenext_small-like: 48/96/160/304 below 1/2).
    """

    def __init__(self, channels: tuple[int, ...] = (32, 48, 96, 160, 304), feature_dim: int = 128):
        super().__init__()
        c2, c4, c8, c16, c32 = channels
        self.stem = nn.Sequential(conv_bn_relu(3, c2, 3, 2), conv_bn_relu(c2, c2))
        self.down4 = nn.Sequential(ResidualBlock(c2, c4, 2), ResidualBlock(c4, c4))
        self.down8 = ResidualBlock(c4, c8, 2)
        self.down16 = ResidualBlock(c8, c16, 2)
        self.down32 = ResidualBlock(c16, c32, 2)
        self.up16 = UpFuse(c32, c16, c16)
        self.up8 = UpFuse(c16, c8, c8)
        self.up4 = UpFuse(c8, c4, c4 * 2)
        self.out = nn.Conv2d(c4 * 2, feature_dim, 3, 1, 1)
        self.pyramid_channels = (c4 * 2, c8, c16)

    def forward(self, images: torch.Tensor) -> dict:
        x4 = self.down4(self.stem(images))
        x8 = self.down8(x4)
        x16 = self.down16(x8)
        x32 = self.down32(x16)
        y16 = self.up16(x32, x16)
        y8 = self.up8(y16, x8)
        y4 = self.up4(y8, x4)
        return {"match": self.out(y4), "pyramid": [y4, y8, y16]}


class ContextNet(nn.Module):
    """Left-view decoder maps at 1/4, 1/8, 1/16 -> GRU initial hidden states (tanh) and per-level context
    biases for the z, r, q gates (each (B, hidden, h, w))."""

    def __init__(self, in_channels: tuple[int, ...], hidden_dims: tuple[int, ...]):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Conv2d(c, h, 3, 1, 1) for c, h in zip(in_channels, hidden_dims))
        self.context = nn.ModuleList(nn.Conv2d(c, 3 * h, 3, 1, 1) for c, h in zip(in_channels, hidden_dims))

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, ...]]]:
        hidden = [torch.tanh(conv(x)) for conv, x in zip(self.hidden, pyramid)]
        context = [tuple(torch.relu(conv(x)).chunk(3, dim=1)) for conv, x in zip(self.context, pyramid)]
        return hidden, context
