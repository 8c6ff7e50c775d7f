"""Transformer layers of STTran (post-LayerNorm, a position embedding added to queries and keys only) and the
batching of a video's pairs into per-frame and sliding-window sequences."""
from __future__ import annotations

import torch
from torch import nn


class PostNormLayer(nn.Module):
    """Self-attention + FFN, post-LayerNorm, dropout 0.1 (STTran's encoder/decoder layer).
    x (B, L, d), pos (B, L, d) or None (added to Q and K, not V), pad (B, L) bool, True = padding.
    The decoder layers (`ffn_norm=False`) have no LayerNorm after the feed-forward block: the reference's
    TransformerDecoderLayer normalises only after the attention (its `norm3`)."""

    def __init__(self, dim: int, heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1, ffn_norm: bool = True):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim) if ffn_norm else nn.Identity()
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, pos: torch.Tensor | None = None,
                return_weights: bool = False):
        qk = x if pos is None else x + pos
        attended, weights = self.attention(qk, qk, x, key_padding_mask=pad, need_weights=return_weights)
        x = self.norm1(x + self.dropout1(attended))
        x = self.norm2(x + self.dropout2(self.ffn(x)))
        return (x, weights) if return_weights else x


def group_slots(im_idx: torch.Tensor, frames: torch.Tensor, span: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots of padded sequences over pairs sorted by frame.

    im_idx (P,) sorted frame of each pair; frames (S,) first frame of each sequence; a sequence holds the pairs
    of frames [f, f + span). Returns index (S, L) long into the P pairs (0 where padded) and pad (S, L) bool.
    """
    num_frames = int(im_idx.max()) + 1 if len(im_idx) else 0
    counts = torch.bincount(im_idx, minlength=num_frames + span)
    starts = torch.cumsum(counts, 0) - counts
    lengths = torch.stack([counts[frames + k] for k in range(span)]).sum(0)
    width = int(lengths.max()) if len(lengths) else 0
    slots = torch.arange(width, device=im_idx.device)
    pad = slots[None, :] >= lengths[:, None]
    index = torch.where(pad, torch.zeros_like(slots)[None, :], starts[frames][:, None] + slots[None, :])
    return index, pad


class SpatialTemporalTransformer(nn.Module):
    """STTran's transformer: a spatial encoder over the pairs of each frame, then a temporal decoder over sliding
    windows of `window` consecutive frames with a learned per-position frame embedding on Q and K.

    features (P, d) pair features sorted by frame, im_idx (P,) -> (spatial output (P, d), temporal output (P, d)).
    Frame t takes its temporal output from the window that ends at t (frames < window-1: the first window).
    """

    def __init__(self, dim: int = 1936, heads: int = 8, ffn_dim: int = 2048, spatial_layers: int = 1,
                 temporal_layers: int = 3, window: int = 2, dropout: float = 0.1):
        super().__init__()
        self.window = window
        self.spatial = nn.ModuleList(PostNormLayer(dim, heads, ffn_dim, dropout) for _ in range(spatial_layers))
        self.temporal = nn.ModuleList(PostNormLayer(dim, heads, ffn_dim, dropout, ffn_norm=False)
                                      for _ in range(temporal_layers))
        self.frame_embedding = nn.Embedding(window, dim)
        nn.init.uniform_(self.frame_embedding.weight)

    def spatial_encode(self, features: torch.Tensor, im_idx: torch.Tensor) -> torch.Tensor:
        frames = torch.unique(im_idx)
        index, pad = group_slots(im_idx, frames)
        x = features[index]
        for layer in self.spatial:
            x = layer(x, pad)
        return x[~pad]  # pairs come back in their sorted order

    def window_starts(self, im_idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        num_frames = int(im_idx.max()) + 1
        span = min(self.window, num_frames)
        return torch.arange(num_frames - span + 1, device=im_idx.device), span

    def temporal_decode(self, x: torch.Tensor, im_idx: torch.Tensor) -> torch.Tensor:
        starts, span = self.window_starts(im_idx)
        index, pad = group_slots(im_idx, starts, span)
        keep = ~pad.all(1)  # windows without any pair (possible with detections) would give NaN attention
        starts, index, pad = starts[keep], index[keep], pad[keep]
        position = (im_idx[index] - starts[:, None]).clamp(0, span - 1)
        pos = self.frame_embedding(position)
        y = x[index]
        for layer in self.temporal:
            y = layer(y, pad, pos)
        # Output of pair p: from the window starting at max(0, frame - span + 1) (the window that ends at it).
        wanted_start = (im_idx - span + 1).clamp_min(0)
        window_row = torch.full((int(starts.max()) + 1,), -1, dtype=torch.long, device=x.device)
        window_row[starts] = torch.arange(len(starts), device=x.device)
        rows = window_row[wanted_start]
        # Within the chosen window, a pair's slot is its offset from the window's first pair.
        first_pair = index[:, 0]
        slots = torch.arange(len(im_idx), device=x.device) - first_pair[rows]
        return y[rows, slots]

    def forward(self, features: torch.Tensor, im_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spatial_out = self.spatial_encode(features, im_idx)
        return spatial_out, self.temporal_decode(spatial_out, im_idx)
