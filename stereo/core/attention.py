"""The attention gates of FoundationStereo: image features gating a cost volume (FeatureAtt), channel attention
on the GRU context (CAM) and the spatial attention map that mixes the two Selective-ConvGRU branches (SAM)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.core.layers import ConvNormAct


class FeatureAttention(nn.Module):
    """Cost volume (B, C_cv, D, H, W) × sigmoid(per-pixel gate from image features (B, C_feat, H, W)): the same
    gate for every disparity. Reference: FeatureAtt."""

    def __init__(self, volume_channels: int, feature_channels: int):
        super().__init__()
        self.feat_att = nn.Sequential(
            ConvNormAct(feature_channels, feature_channels // 2, kernel_size=1),
            nn.Conv2d(feature_channels // 2, volume_channels, 1))

    def forward(self, volume: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.feat_att(features)).unsqueeze(2) * volume


class ChannelAttention(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) weights in (0, 1) from average- and max-pooled channels through a shared
    bottleneck (C/16). Reference: ChannelAttentionEnhancement."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(channels, channels // ratio, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(channels // ratio, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)) + self.fc(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    """(B, C, H, W) -> (B, 1, H, W) map in (0, 1) from the channel mean and max (7×7 conv).
    Reference: SpatialAttentionExtractor."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.samconv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.samconv(pooled))
