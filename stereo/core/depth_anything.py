"""DepthAnything-V2 (a DINOv2 ViT with patch 14 and a DPT head), the frozen monocular prior of FoundationStereo.

Parameter names are DepthAnything-V2's (`pretrained.blocks.N.attn.qkv`, `depth_head.scratch.refinenet1...`), so
its released `depth_anything_v2_vit{s,b,l}.pth` loads strictly; the transformer blocks are timm's `Block` (same
parameter layout and computation as DINOv2's). FoundationStereo uses the DPT's `output_conv1` feature (32, 64, 128
channels for vits, vitb, vitl) at the ViT input resolution; the depth output itself is unused.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

PATCH = 14
PRETRAIN_GRID = 37  # DINOv2 was trained at 518 px: pos_embed holds 1 + 37·37 entries
# vitt is not a released size: a quarter-size DINOv2 layout (DeiT-tiny widths) for the CPU test suite, where the
# frozen branch only has to be present and cheap; model_config refuses real weights for it.
VIT_CONFIGS = {"vitt": dict(dim=192, depth=12, heads=3), "vits": dict(dim=384, depth=12, heads=6), "vitb": dict(dim=768, depth=12, heads=12),
               "vitl": dict(dim=1024, depth=24, heads=16)}
DPT_CONFIGS = {"vitt": dict(features=32, out_channels=(24, 48, 96, 192), layers=(2, 5, 8, 11)),
               "vits": dict(features=64, out_channels=(48, 96, 192, 384), layers=(2, 5, 8, 11)),
               "vitb": dict(features=128, out_channels=(96, 192, 384, 768), layers=(2, 5, 8, 11)),
               "vitl": dict(features=256, out_channels=(256, 512, 1024, 1024), layers=(4, 11, 17, 23))}


def feature_channels(vit_size: str) -> int:
    """Channels of the DPT feature FoundationStereo takes (output_conv1): features / 2."""
    return DPT_CONFIGS[vit_size]["features"] // 2


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT/14 with layer scale and no register tokens. `intermediate_layers` returns the normed patch
    tokens (B, N, dim) after the given blocks."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID ** 2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused (masked training only); in the released files
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, init_values=1.0, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(dim)

    def position_embedding(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + grid_h·grid_w, dim): DINOv2's bicubic resize of the 37×37 table by the scale factor
        (grid + 0.1) / 37 (its historical offset; a resize *to* the size would give different numbers)."""
        if grid_h == grid_w == PRETRAIN_GRID:
            return self.pos_embed
        table = self.pos_embed.float()
        dim = table.shape[-1]
        patches = table[:, 1:].reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, dim).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, mode="bicubic", antialias=False,
                                scale_factor=((grid_h + 0.1) / PRETRAIN_GRID, (grid_w + 0.1) / PRETRAIN_GRID))
        patches = patches.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([table[:, :1], patches], dim=1).to(dtype)

    def intermediate_layers(self, images: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(images.shape[-2] // PATCH, images.shape[-1] // PATCH, tokens.dtype)
        outputs = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in layers:
                outputs.append(self.norm(tokens)[:, 1:])
        return outputs


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """DPT refinement: (coarser path + residual(skip)) -> residual -> bilinear resize (×2 or to `size`) -> 1×1."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, path: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        resize = {"size": size} if size is not None else {"scale_factor": 2}
        return self.out_conv(F.interpolate(path, **resize, mode="bilinear", align_corners=True))


class DPTHead(nn.Module):
    """Four ViT token maps -> the `output_conv1` feature (B, features/2, 14·grid_h, 14·grid_w)."""

    def __init__(self, vit_dim: int, features: int, out_channels: tuple[int, ...]):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(vit_dim, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1)])
        self.scratch = nn.Module()
        for index, channels in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{index}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        for index in range(1, 5):
            setattr(self.scratch, f"refinenet{index}", FusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        # The depth output (unused by FoundationStereo, kept so the released weights load strictly).
        self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(True),
                                                  nn.Conv2d(32, 1, 1), nn.ReLU(True), nn.Identity())

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        s = self.scratch
        maps = []
        for index, x in enumerate(tokens):
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], grid_h, grid_w)
            maps.append(getattr(s, f"layer{index + 1}_rn")(self.resize_layers[index](self.projects[index](x))))
        path = s.refinenet4(maps[3], size=maps[2].shape[2:])
        path = s.refinenet3(path, maps[2], size=maps[1].shape[2:])
        path = s.refinenet2(path, maps[1], size=maps[0].shape[2:])
        path = s.refinenet1(path, maps[0])
        out = s.output_conv1(path)
        return F.interpolate(out, (grid_h * PATCH, grid_w * PATCH), mode="bilinear", align_corners=True)


class DepthAnythingV2(nn.Module):
    """ImageNet-normalised images (B, 3, H, W), H and W multiples of 14 -> DPT feature (B, features/2, H, W)."""

    def __init__(self, vit_size: str):
        super().__init__()
        if vit_size not in VIT_CONFIGS:
            raise ValueError(f"vit_size must be one of {sorted(VIT_CONFIGS)}, got {vit_size!r}")
        self.layers = DPT_CONFIGS[vit_size]["layers"]
        self.pretrained = DinoV2(**VIT_CONFIGS[vit_size])
        self.depth_head = DPTHead(VIT_CONFIGS[vit_size]["dim"], DPT_CONFIGS[vit_size]["features"],
                                  DPT_CONFIGS[vit_size]["out_channels"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = images.shape[-2] // PATCH, images.shape[-1] // PATCH
        return self.depth_head(self.pretrained.intermediate_layers(images, self.layers), grid_h, grid_w)


def vit_input_size(height: int, width: int, divisor: int = math.lcm(PATCH, 16), max_side: int = 1344) -> tuple[int, int]:
    """The ViT input size: each side rounded up to a multiple of 112; if a side then exceeds 1344, that side
    becomes 1344 and the other is scaled with it (rounded up). Reference: get_resize_keep_aspect_ratio."""
    def round_up(x: float) -> int:
        return int(math.ceil(x / divisor) * divisor)

    resized_h, resized_w = round_up(height), round_up(width)
    if resized_h > max_side or resized_w > max_side:
        if resized_h > resized_w:
            resized_h, resized_w = max_side, round_up(resized_w * max_side / resized_h)
        else:
            resized_h, resized_w = round_up(resized_h * max_side / resized_w), max_side
    return resized_h, resized_w


class FrozenDepthAnything(nn.Module):
    """The frozen side branch: ImageNet-normalised images (B, 3, H, W) -> DPT feature (B, C, H/4, W/4), computed
    without gradients on a bicubic resize to `vit_input_size`. Always in eval mode; parameters never train."""

    def __init__(self, vit_size: str):
        super().__init__()
        self.depth_anything = DepthAnythingV2(vit_size)
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenDepthAnything":
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        with torch.no_grad():
            resized = F.interpolate(images, size=vit_input_size(height, width), mode="bicubic", align_corners=False)
            features = self.depth_anything(resized)
        return F.interpolate(features, size=(height // 4, width // 4), mode="bilinear", align_corners=True)
