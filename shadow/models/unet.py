"""The default backbone: a plain-PyTorch UNet in pixel space, f(x_t, t, cond, light) -> velocity.

Input channels [x_t (1), mask (1), object RGB (3)] at the image resolution; output the 1-channel velocity.
GroupNorm-SiLU-Conv residual blocks modulated (scale and shift) by the embedding (time + light), self-attention at the
lowest resolution and in the middle, a zero-initialised output conv plus the output skip t * x_t (see forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from shadow.models.embedding import LightEmbedding, sinusoidal_embedding


@dataclass(frozen=True)
class UNetConfig:
    channels: tuple[int, ...]  # width per resolution level; each level after the first halves the resolution
    layers_per_level: int = 2
    attention_lowest: bool = True  # self-attention in the lowest-resolution level (besides the middle block)
    head_dim: int = 32


# One config per training resolution. 256/512/1024 keep the lowest level at 32x32 (attention over 1024 tokens);
# 32/64/128 are the small configs the demo and the tests train on CPU.
UNET_CONFIGS = {
    32: UNetConfig((16, 32), layers_per_level=1, attention_lowest=False),
    64: UNetConfig((16, 32, 64), layers_per_level=1, attention_lowest=False),
    128: UNetConfig((32, 64, 128, 128), layers_per_level=1),
    256: UNetConfig((64, 128, 256, 256), layers_per_level=2),
    512: UNetConfig((64, 128, 256, 256, 512), layers_per_level=2),
    1024: UNetConfig((32, 64, 128, 256, 256, 512), layers_per_level=2),
}


def unet_config(image_size: int) -> UNetConfig:
    if image_size not in UNET_CONFIGS:
        raise ValueError(f"No unet config for image_size={image_size}; available: {sorted(UNET_CONFIGS)}.")
    return UNET_CONFIGS[image_size]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)  # scale and shift (FiLM) of the normalised features
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable deep training from scratch
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        # Scale-and-shift conditioning (as ADM) rather than an added bias: the light has to move the shadow
        # spatially, which multiplicative gating of features learns much faster than a bias.
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ShadowUNet(nn.Module):
    """Pixel-space backend. x0 = 2 * shadow - 1 (1 channel); cond = [mask, object] (4 channels)."""

    target_channels = 1

    def __init__(self, config: UNetConfig, in_cond_channels: int = 4):
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        base = config.channels[0]
        emb_dim = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.light = LightEmbedding(emb_dim, zero_init=False)  # trained from scratch: no behaviour to preserve
        self.conv_in = nn.Conv2d(self.target_channels + in_cond_channels, base, 3, padding=1)
        lowest = len(config.channels) - 1

        self.down = nn.ModuleList()
        skip_channels, ch = [base], base
        for level, width in enumerate(config.channels):
            for _ in range(config.layers_per_level):
                self.down.append(ResBlock(ch, width, emb_dim))
                ch = width
                if level == lowest and config.attention_lowest:
                    self.down.append(SelfAttention(ch, config.head_dim))
                skip_channels.append(ch)
            if level != lowest:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_channels.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim), SelfAttention(ch, config.head_dim),
                                  ResBlock(ch, ch, emb_dim)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(config.channels))):
            width = config.channels[level]
            for _ in range(config.layers_per_level + 1):
                self.up.append(ResBlock(ch + skip_channels.pop(), width, emb_dim))
                ch = width
                if level == lowest and config.attention_lowest:
                    self.up.append(SelfAttention(ch, config.head_dim))
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, self.target_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    # --- the backend interface shared with the SDXL backend -------------------------------------------------
    def encode_target(self, shadow_map: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) shadow strength in [0, 1] -> x0 (B, 1, H, W) in [-1, 1]."""
        return shadow_map * 2 - 1

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, 1, H, W) -> shadow strength (B, 1, H, W) clamped to [0, 1]."""
        return ((x0.float() + 1) / 2).clamp(0, 1)

    def encode_condition(self, mask: torch.Tensor, object_image: torch.Tensor) -> torch.Tensor:
        """mask (B, 1, H, W) in {0, 1}, object (B, 3, H, W) in [-1, 1] -> cond (B, 4, H, W)."""
        return torch.cat([mask, object_image], dim=1)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.gradient_checkpointing = enabled

    # --- the denoiser ---------------------------------------------------------------------------------------
    def _run(self, block: nn.Module, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if isinstance(block, (ResBlock, SelfAttention)):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                return checkpoint(block, x, emb, use_reentrant=False)
            return block(x, emb)
        return block(x)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, theta: torch.Tensor,
                phi: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """x_t (B, 1, H, W), t (B,) in [0, 1], cond (B, 4, H, W), θ/φ in degrees and size (B,) -> velocity
        (B, 1, H, W), the estimate of ε - x0."""
        base = self.config.channels[0]
        emb = self.time_mlp(sinusoidal_embedding(1000.0 * t, base).to(x_t.dtype))  # t in [0,1] -> SDXL's 0..1000
        emb = emb + self.light(theta, phi, size)
        h = self.conv_in(torch.cat([x_t, cond.to(x_t.dtype)], dim=1))
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            if not isinstance(block, SelfAttention):
                skips.append(h)
            else:
                skips[-1] = h
        for block in self.mid:
            h = self._run(block, h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run(block, h, emb)
        # Output skip t * x_t: at t = 1 (the one-step sampler) the target ε - x0 holds the input noise itself, which
        # a network reproduces only approximately; with the skip the layers predict just -x0 there. A fixed
        # reparameterisation of f (as EDM's c_skip); the loss and the sampler are unchanged.
        return self.conv_out(F.silu(self.norm_out(h))) + t.view(-1, 1, 1, 1).to(x_t.dtype) * x_t
