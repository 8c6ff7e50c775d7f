"""Transformer pieces of LAQ (the C-ViViT family): bias-free LayerNorm, GEGLU feed-forward, PEG, continuous
relative position bias, cosine-similarity attention and the block stack.

Numerics follow LAPA's `laq_model/attention.py` (spec §1); the speed-ups are exact rewrites:
- attention runs through `F.scaled_dot_product_attention` with q, k already L2-normalised and scaled by their
  learned per-dimension gains, `scale=temperature` (8) and the position bias passed as `attn_mask`;
- the position-bias MLP is evaluated on the (2h-1)(2w-1) distinct offsets, not on all (hw)^2 pairs, and once per
  model forward (the encoder and the decoder share it); the offset index table is cached per grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a fixed zero bias (a buffer), as in the reference."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim: int, mult: float = 4.0, dropout: float = 0.0) -> nn.Sequential:
    """Pre-norm GEGLU MLP; inner size int(mult * 2/3 * dim) (2730 at dim 1024), no biases in the linears.
    The norm here is torch's LayerNorm *with* bias, exactly as in the reference (this is what makes 343,796,080)."""
    inner = int(mult * (2 / 3) * dim)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner * 2, bias=False), GEGLU(), nn.Dropout(dropout),
                         nn.Linear(inner, dim, bias=False))


class PEG(nn.Module):
    """Position-generating depthwise 3x3x3 Conv3d over (t, h, w); zero-padded causally in time.

    Returns the conv output only (the caller adds the residual). Tokens arrive as (B*T, h*w, d) from the spatial
    stack or as (B*h*w, T, d) from the temporal stack; `layout` says which, so the grid is rebuilt correctly.
    LAPA reshapes the temporal layout straight to (B, T, h, w, d) without permuting, so its PEG convolves scrambled
    positions; `layout="temporal_lapa"` does exactly that (model.lapa_compat, for LAPA's weights).

    The parameters are those of `nn.Conv3d(dim, dim, 3, groups=dim)` (state-dict compatible), but the conv is
    computed as one depthwise 3x3 Conv2d per time tap: CPU depthwise Conv3d backward is several times slower,
    and with causal padding and T <= 2 most time taps only ever see the zero padding, so they are skipped.
    Same numbers up to float summation order (tests/laq/test_laq_models.py compares with F.conv3d).
    """

    def __init__(self, dim: int, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.dsconv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int], layout: str) -> torch.Tensor:
        b, t, h, w = grid
        if layout not in ("spatial", "temporal", "temporal_lapa"):
            raise ValueError(f"PEG layout {layout!r}; use 'spatial', 'temporal' or 'temporal_lapa'")
        as_spatial = layout != "temporal"  # temporal_lapa: the memory of (b h w) t d read as (b t) (h w) d
        if as_spatial:  # (b t) (h w) d
            video = x.reshape(b, t, h, w, -1)
        else:  # temporal: (b h w) t d
            video = x.reshape(b, h, w, t, -1).permute(0, 3, 1, 2, 4)
        dim = video.shape[-1]
        video = video.permute(0, 1, 4, 2, 3)  # (b, t, d, h, w)
        first_frame_tap = 2 if self.causal else 1  # output frame i reads input frame i + kt - first_frame_tap
        out = None
        for kt in range(3):
            shift = kt - first_frame_tap
            lo, hi = max(0, -shift), min(t, t - shift)  # output frames whose input frame exists (not padding)
            if lo >= hi:
                continue
            source = video[:, lo + shift:hi + shift].reshape(-1, dim, h, w)
            acc = F.conv2d(source, self.dsconv.weight[:, :, kt].to(x.dtype), padding=1, groups=dim)
            acc = acc.reshape(b, hi - lo, dim, h, w)
            if (lo, hi) != (0, t):
                acc = F.pad(acc, (0, 0, 0, 0, 0, 0, lo, t - hi))
            out = acc if out is None else out + acc
        out = out + self.dsconv.bias.to(x.dtype)[:, None, None]
        if as_spatial:
            return out.permute(0, 1, 3, 4, 2).reshape(x.shape)
        return out.permute(0, 3, 4, 1, 2).reshape(x.shape)


class ContinuousPositionBias(nn.Module):
    """Relative position bias (Swin-v2 style): an MLP 2 -> dim -> dim -> heads on log-scaled (dy, dx).

    forward(h, w) -> (heads, h*w, h*w) float32. The MLP runs on the (2h-1)(2w-1) distinct offsets and is gathered
    to all pairs, which gives the same numbers as running it on every pair (it acts row by row).
    """

    def __init__(self, dim: int, heads: int, layers: int = 2):
        super().__init__()
        self.net = nn.ModuleList([nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1))])
        for _ in range(layers - 1):
            self.net.append(nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1)))
        self.net.append(nn.Linear(dim, heads))
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._tables:
            dy, dx = torch.meshgrid(torch.arange(-(h - 1), h, device=device),
                                    torch.arange(-(w - 1), w, device=device), indexing="ij")
            offsets = torch.stack([dy, dx], dim=-1).reshape(-1, 2).float()
            offsets = torch.sign(offsets) * torch.log(offsets.abs() + 1)
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            ys, xs = ys.reshape(-1), xs.reshape(-1)
            rel_y = ys[:, None] - ys[None, :] + (h - 1)
            rel_x = xs[:, None] - xs[None, :] + (w - 1)
            self._tables[key] = (offsets, rel_y * (2 * w - 1) + rel_x)
        return self._tables[key]

    def forward(self, h: int, w: int) -> torch.Tensor:
        offsets, index = self._table(h, w, self.net[-1].weight.device)
        values = offsets
        for layer in self.net:
            values = layer(values)
        return values.t()[:, index]  # (heads, n, n)


class Attention(nn.Module):
    """Cosine-similarity multi-head attention with learned per-dimension q/k gains and temperature `scale`.

    x: (B, n, dim); context: (B, m, dim) for cross-attention (then `num_null_kv` learned key/value pairs are
    prepended); bias: (heads, n, n) added to the logits of self-attention. Returns (B, n, dim).
    As in the reference, self-attention takes k and v from the *un-normalised* x (only q sees `norm`).
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, num_null_kv: int = 0, dropout: float = 0.0,
                 scale: float = 8.0, is_cross: bool = False):
        super().__init__()
        inner = dim_head * heads
        self.heads, self.dim_head, self.scale, self.dropout = heads, dim_head, scale, dropout
        self.num_null_kv = num_null_kv
        self.norm = LayerNorm(dim)
        self.context_norm = LayerNorm(dim)
        if not is_cross:
            # The reference builds a context norm in self-attention too but never uses it. Kept so parameter counts
            # and state-dict keys match; frozen so DDP does not wait for a gradient that never comes.
            self.context_norm.gamma.requires_grad_(False)
        self.null_kv = nn.Parameter(torch.randn(heads, 2 * num_null_kv, dim_head))
        if not num_null_kv:
            self.null_kv.requires_grad_(False)  # empty in self-attention (as the reference); nothing to train
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, self.dim_head)).transpose(1, 2)  # (B, heads, n, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        kv_input = self.context_norm(context) if context is not None else x
        q = self._heads(self.to_q(self.norm(x)))
        k, v = map(self._heads, self.to_kv(kv_input).chunk(2, dim=-1))
        if self.num_null_kv:
            null_k, null_v = self.null_kv.unflatten(1, (self.num_null_kv, 2)).unbind(dim=2)  # (heads, nn, d) each
            batch = x.shape[0]
            k = torch.cat([null_k.to(k.dtype).expand(batch, -1, -1, -1), k], dim=2)
            v = torch.cat([null_v.to(v.dtype).expand(batch, -1, -1, -1), v], dim=2)
            if bias is not None:
                bias = F.pad(bias, (self.num_null_kv, 0))
        q = F.normalize(q, dim=-1) * self.q_scale.to(q.dtype)
        k = F.normalize(k, dim=-1) * self.k_scale.to(k.dtype)
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).flatten(2))


class Transformer(nn.Module):
    """Blocks of [PEG residual, self-attention, (cross-attention), GEGLU FF], then a final LayerNorm.

    forward(x, grid=(B, T, h, w), layout="spatial"|"temporal"|"temporal_lapa", bias=None, context=None) -> same
    shape as x (layout: see PEG).
    """

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, cross_attn: bool = False,
                 num_null_kv: int = 2, attn_dropout: float = 0.0, ff_dropout: float = 0.0, ff_mult: float = 4.0):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([
                PEG(dim, causal=True),
                Attention(dim, dim_head, heads, dropout=attn_dropout),
                Attention(dim, dim_head, heads, num_null_kv=num_null_kv, dropout=attn_dropout,
                          is_cross=True) if cross_attn else None,
                feed_forward(dim, ff_mult, ff_dropout),
            ]))
        self.norm_out = LayerNorm(dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int], layout: str,
                bias: torch.Tensor | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        for peg, self_attn, cross_attn, ff in self.layers:
            x = peg(x, grid, layout) + x
            x = self_attn(x, bias=bias) + x
            if cross_attn is not None and context is not None:
                x = cross_attn(x, context=context) + x
            x = ff(x) + x
        return self.norm_out(x)
