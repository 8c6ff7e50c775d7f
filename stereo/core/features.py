"""Image features of FoundationStereo.

`Feature` is the Side-Tuning Adapter: a trainable timm `edgenext_small` (48/96/160/304 channels at 1/4 ... 1/32),
decoded back to 1/4 by InstanceNorm deconvolution blocks, next to the frozen DepthAnything-V2 branch whose DPT
feature is concatenated at 1/4. `ContextNet` is the separate context encoder (RAFT's residual CNN plus the ViT
feature) that gives the GRUs' initial hidden states and their context at 1/4, 1/8 and 1/16.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from stereo.core.depth_anything import FrozenDepthAnything, feature_channels
from stereo.core.layers import ConvNormAct, ResidualBlock, UpConcat

EDGENEXT_CHANNELS = (48, 96, 160, 304)


class Feature(nn.Module):
    """Normalised images (2B, 3, H, W), H and W multiples of 32 -> ([x4, x8, x16, x32], vit_feature) with
    x4 (2B, 96 + C_vit, H/4, W/4), x8 (2B, 192, H/8, W/8), x16 (2B, 320, H/16, W/16), x32 (2B, 304, H/32, W/32)
    and vit_feature (2B, C_vit, H/4, W/4); `d_out` lists those channel counts."""

    def __init__(self, vit_size: str):
        super().__init__()
        edgenext = timm.create_model("edgenext_small", pretrained=False)
        self.stem = edgenext.stem
        self.stages = edgenext.stages
        c = EDGENEXT_CHANNELS
        self.dino = FrozenDepthAnything(vit_size)
        vit_dim = feature_channels(vit_size)
        self.deconv32_16 = UpConcat(c[3], c[2])
        self.deconv16_8 = UpConcat(2 * c[2], c[1])
        self.deconv8_4 = UpConcat(2 * c[1], c[0])
        width = 2 * c[0] + vit_dim
        self.conv4 = nn.Sequential(ConvNormAct(width, width, norm="instance", kernel_size=3, padding=1),
                                   ResidualBlock(width, width, norm="instance"),
                                   ResidualBlock(width, width, norm="instance"))
        self.d_out = [width, 2 * c[1], 2 * c[2], c[3]]

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        vit_feature = self.dino(images)
        x4 = self.stages[0](self.stem(images))
        x8 = self.stages[1](x4)
        x16 = self.stages[2](x8)
        x32 = self.stages[3](x16)
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.conv4(torch.cat([self.deconv8_4(x8, x4), vit_feature], dim=1))
        return [x4, x8, x16, x32], vit_feature


def _residual_stage(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(in_channels, channels, "batch", stride), ResidualBlock(channels, channels, "batch"))


class ContextNet(nn.Module):
    """Left image (B, 3, H, W) and its ViT feature (B, C_vit, H/4, W/4) -> [(hidden, context)] at 1/4, 1/8, 1/16,
    each (B, hidden_dim, h, w) before the tanh / ReLU the model applies. Reference: ContextNetDino with
    n_downsample = 2 (so 1/4 is the finest GRU level)."""

    def __init__(self, hidden_dim: int, vit_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, padding=3)
        self.norm1 = nn.BatchNorm2d(64)
        self.layer1 = _residual_stage(64, 64, 1)
        self.layer2 = _residual_stage(64, 96, 2)
        self.layer3 = _residual_stage(96, 128, 2)
        self.layer4 = _residual_stage(128, 128, 2)
        self.layer5 = _residual_stage(128, 128, 2)
        # `down` and `norm` are never used in the reference's forward; they exist so its checkpoints load strictly.
        self.down = nn.Sequential(nn.Conv2d(128, 128, 4, stride=4), nn.BatchNorm2d(128))
        self.conv2 = ConvNormAct(128 + vit_dim, 128, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(256)
        # [0] gives the hidden state, [1] the context, at each level.
        self.outputs04 = nn.ModuleList(nn.Sequential(ResidualBlock(128, 128, "batch"), nn.Conv2d(128, hidden_dim, 3, padding=1))
                                       for _ in range(2))
        self.outputs08 = nn.ModuleList(nn.Sequential(ResidualBlock(128, 128, "batch"), nn.Conv2d(128, hidden_dim, 3, padding=1))
                                       for _ in range(2))
        self.outputs16 = nn.ModuleList(nn.Conv2d(128, hidden_dim, 3, padding=1) for _ in range(2))

    def forward(self, image: torch.Tensor, vit_feature: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = torch.relu(self.norm1(self.conv1(image)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x4 = self.conv2(torch.cat([x, vit_feature], dim=1))
        x8 = self.layer4(x4)
        x16 = self.layer5(x8)
        return [tuple(head(x4) for head in self.outputs04), tuple(head(x8) for head in self.outputs08),
                tuple(head(x16) for head in self.outputs16)]
