"""Attentive Hybrid Cost Filtering (AHCF): a 3-level 3D hourglass of axial-planar convolutions whose every level is
gated by the left image features at that scale (feature attention), plus the Disparity Transformer on a
4×4×4-patchified copy of the input volume, upsampled and added before the output convs.
Reference: `hourglass` in core/foundation_stereo.py (module `cost_agg`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.core.attention import FeatureAttention
from stereo.core.disparity_transformer import DisparityTransformer
from stereo.core.layers import AxialPlanarConv3d, ConvNormAct


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(in_channels, out_channels, dims=3, kernel_size=3, padding=1, stride=2),
                         AxialPlanarConv3d(out_channels, out_channels))


def _up(in_channels: int, out_channels: int) -> ConvNormAct:
    return ConvNormAct(in_channels, out_channels, dims=3, deconv=True, kernel_size=4, padding=1, stride=2)


def _aggregate(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(in_channels, out_channels, dims=3, kernel_size=1),
                         AxialPlanarConv3d(out_channels, out_channels), AxialPlanarConv3d(out_channels, out_channels))


class Hourglass(nn.Module):
    """volume (B, C, D, H, W) at 1/4 and left features [1/4, 1/8, 1/16, 1/32] (channels `feature_dims`) -> filtered
    volume (B, C, D, H, W). D, H and W must be multiples of 8 (three stride-2 levels; the transformer patch is 4)."""

    def __init__(self, channels: int, feature_dims: list[int], max_disp: int, attend_over: str = "disparity"):
        super().__init__()
        c = channels
        self.conv1 = _down(c, 2 * c)
        self.conv2 = _down(2 * c, 4 * c)
        self.conv3 = _down(4 * c, 6 * c)
        self.conv3_up = _up(6 * c, 4 * c)
        self.conv2_up = _up(4 * c, 2 * c)
        self.conv1_up = _up(2 * c, c)
        self.conv_out = nn.Sequential(AxialPlanarConv3d(c, c), AxialPlanarConv3d(c, c))
        self.agg_0 = _aggregate(8 * c, 4 * c)
        self.agg_1 = _aggregate(4 * c, 2 * c)
        self.atts = nn.ModuleDict({"4": DisparityTransformer(c, heads=4, ffn_dim=c, layers=4, max_len=max_disp // 16,
                                                             attend_over=attend_over)})
        self.conv_patch = nn.Sequential(nn.Conv3d(c, c, kernel_size=4, stride=4, groups=c), nn.BatchNorm3d(c))
        self.feature_att_8 = FeatureAttention(2 * c, feature_dims[1])
        self.feature_att_16 = FeatureAttention(4 * c, feature_dims[2])
        self.feature_att_32 = FeatureAttention(6 * c, feature_dims[3])
        self.feature_att_up_16 = FeatureAttention(4 * c, feature_dims[2])
        self.feature_att_up_8 = FeatureAttention(2 * c, feature_dims[1])

    def forward(self, volume: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        conv1 = self.feature_att_8(self.conv1(volume), features[1])
        conv2 = self.feature_att_16(self.conv2(conv1), features[2])
        conv3 = self.feature_att_32(self.conv3(conv2), features[3])

        conv2 = self.agg_0(torch.cat([self.conv3_up(conv3), conv2], dim=1))
        conv2 = self.feature_att_up_16(conv2, features[2])
        conv1 = self.agg_1(torch.cat([self.conv2_up(conv2), conv1], dim=1))
        conv1 = self.feature_att_up_8(conv1, features[1])
        out = self.conv1_up(conv1)

        # Long-range context along disparity, on 4×4×4 patches of the unfiltered volume.
        context = self.atts["4"](self.conv_patch(volume))
        out = out + F.interpolate(context, scale_factor=4, mode="trilinear", align_corners=False)
        return self.conv_out(out)
