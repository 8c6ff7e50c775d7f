"""The Disparity Transformer of AHCF: self-attention along the disparity axis of a (patchified) cost volume,
independently at every pixel, with sinusoidal position encoding over disparity.

Which axis the attention runs over is a documented choice (`attend_over`):
  "disparity"  attention over the D disparity tokens, per head: what the paper describes and what the released
               weights were trained with (the first public release called flash_attn_func on (B, L, heads, dim)
               tensors, i.e. over L);
  "heads"      what the reference's current code computes: since 2025-06 it passes the same (B, L, heads, dim)
               tensors to F.scaled_dot_product_attention, which attends over the 4 heads instead (open PR
               NVlabs/FoundationStereo#217). Only for reproducing that code's numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTEND_OVER = ("disparity", "heads")


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim): sin at even channels, cos at odd, frequencies 10000^(-2i/dim) (Transformer)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = (torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim)).exp()[None]
    encoding = torch.zeros(length, dim)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding.unsqueeze(0)


class MultiheadAttention(nn.Module):
    """Self-attention (N, L, C) -> (N, L, C) with separate q/k/v projections (reference: FlashMultiheadAttention)."""

    def __init__(self, dim: int, heads: int, attend_over: str = "disparity"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        if attend_over not in ATTEND_OVER:
            raise ValueError(f"attend_over must be one of {ATTEND_OVER}, got {attend_over!r}")
        self.heads, self.attend_over = heads, attend_over
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (proj(x).view(batch, length, self.heads, dim // self.heads)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.attend_over == "disparity":
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.reshape(batch, length, dim))


class TransformerLayer(nn.Module):
    """Post-norm encoder layer: x = LN(x + attn(x)); x = LN(x + W2·GELU(W1·x)), dropout 0.1 in training
    (reference: FlashAttentionTransformerEncoderLayer)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, attend_over: str = "disparity"):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attend_over)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.gelu(self.linear1(x))))))


class DisparityTransformer(nn.Module):
    """(B, C, D, H, W) -> same: every pixel's D disparity tokens (C channels each, plus position encoding) go
    through `layers` transformer layers. D must not exceed `max_len` (= max_disp/16 in the model).
    Reference: CostVolumeDisparityAttention."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, layers: int, max_len: int, attend_over: str = "disparity"):
        super().__init__()
        self.sa = nn.ModuleList(TransformerLayer(dim, heads, ffn_dim, attend_over=attend_over) for _ in range(layers))
        self.register_buffer("position", sinusoidal_encoding(max_len, dim), persistent=False)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        batch, channels, disp, height, width = volume.shape
        if disp > self.position.shape[1]:
            raise ValueError(f"{disp} disparity tokens but the position encoding holds {self.position.shape[1]}")
        x = volume.permute(0, 3, 4, 2, 1).reshape(batch * height * width, disp, channels)
        x = x + self.position[:, :disp].to(x.dtype)
        for layer in self.sa:
            x = layer(x)
        return x.reshape(batch, height, width, disp, channels).permute(0, 4, 3, 1, 2)
