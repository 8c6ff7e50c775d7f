"""The `dinov2` feature branch: a frozen DINOv2 ViT (patch 14) whose last-layer patch tokens are projected and
resized to 1/4 resolution, to be concatenated with the CNN features (as FoundationStereo's frozen
DepthAnything-V2 branch, without the DPT head).

Parameter names follow the official DINOv2 checkpoints (`patch_embed.proj`, `blocks.N.attn.qkv`, `ls1.gamma`,
...), so `dinov2_vit{s,b,l}14_pretrain.pth` loads directly. Without a weights file the ViT stays randomly
initialised and a warning says so: useful for tests and shapes, useless for accuracy.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

VIT_SIZES = {"vits": (384, 12, 6), "vitb": (768, 12, 12), "vitl": (1024, 24, 16)}  # (dim, depth, heads)
PATCH = 14
PRETRAIN_GRID = 37  # DINOv2 was trained at 518 px = 37 patches; pos_embed holds 1 + 37*37 entries
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """ImageNet-normalised (B, 3, H, W), H and W multiples of 14 -> patch features (B, dim, H/14, W/14)."""

    def __init__(self, size: str = "vitl"):
        super().__init__()
        if size not in VIT_SIZES:
            raise ValueError(f"vit_size must be one of {sorted(VIT_SIZES)}, got {size!r}")
        dim, depth, heads = VIT_SIZES[size]
        self.dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + PRETRAIN_GRID ** 2, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused here; kept so official weights load strictly
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (grid_h, grid_w) != (PRETRAIN_GRID, PRETRAIN_GRID):
            patch_pos = patch_pos.reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, -1).permute(0, 3, 1, 2)
            patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = images.shape[-2] // PATCH, images.shape[-1] // PATCH
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self._positions(grid_h, grid_w)
        for block in self.blocks:
            tokens = block(tokens)
        patches = self.norm(tokens)[:, 1:]
        return patches.transpose(1, 2).reshape(images.shape[0], self.dim, grid_h, grid_w)


def load_dinov2_weights(vit: DinoV2, path: str | Path) -> None:
    """Load an official DINOv2 (or DepthAnything-V2 'pretrained.'-prefixed) state dict; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINOv2 weights file not found: {path}. Set model.vit_weights to a local "
                                "dinov2_vit*14_pretrain.pth (nothing is downloaded).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    for prefix in ("pretrained.", "backbone.", "module."):
        if any(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    own = vit.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or wrong:
        raise ValueError(f"{path} does not match the configured ViT ({len(missing)} missing keys, e.g. "
                         f"{missing[:3]}; {len(wrong)} shape mismatches, e.g. {wrong[:3]}). Check model.vit_size.")
    vit.load_state_dict({key: state[key] for key in own})


class VitBranch(nn.Module):
    """Frozen DINOv2 + trainable 1×1 projection: normalised images (B, 3, H, W) -> (B, out_dim, H/4, W/4)."""

    def __init__(self, size: str = "vitl", weights: str | None = None, out_dim: int = 64):
        super().__init__()
        self.vit = DinoV2(size)
        if weights:
            load_dinov2_weights(self.vit, weights)
        else:
            log.warning("feature_type 'dinov2' without model.vit_weights: the ViT is randomly initialised and frozen, "
                        "so its features carry no pretrained knowledge. Point model.vit_weights at a local "
                        "DINOv2 checkpoint for real training.")
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.project = nn.Conv2d(self.vit.dim, out_dim, 1)

    def train(self, mode: bool = True) -> "VitBranch":
        super().train(mode)
        self.vit.eval()  # frozen: never in training mode (no dropout/statistics to update anyway)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        vit_h = max(PATCH, int(math.floor(height / PATCH + 0.5)) * PATCH)
        vit_w = max(PATCH, int(math.floor(width / PATCH + 0.5)) * PATCH)
        with torch.no_grad():
            resized = F.interpolate(images, size=(vit_h, vit_w), mode="bicubic", align_corners=False)
            features = self.vit(resized)
        features = F.interpolate(features, size=(height // 4, width // 4), mode="bilinear", align_corners=False)
        return self.project(features)
