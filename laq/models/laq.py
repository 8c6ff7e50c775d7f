"""LatentActionQuantization: the LAPA LAQ model (spec §1) in plain PyTorch.

    first, future (B, 3, H, W) float in [0, 1]
      -> shared patch embedding (LayerNorm, Linear, LayerNorm)           tokens (B, 2, h, w, dim)
      -> spatial transformer (within each frame, relative position bias) then temporal transformer (2 steps)
      -> NSVQ on (future - first) after project_in + CNN                  L action tokens, code ids (B, L)
      -> decoder: first frame's patch embeddings (detached) self-attend and cross-attend to the action tokens
      -> Linear to pixels                                                 predicted future (B, 3, H, W)
    loss = MSE(predicted future, future)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from laq.models.attention import ContinuousPositionBias, Transformer
from laq.models.nsvq import NSVQ


@dataclass
class LAQConfig:
    """Model hyper-parameters; `laq/config/model/*.yaml` hold the named sizes (laq_lapa is the paper's)."""
    image_size: int = 256
    patch_size: int = 32
    channels: int = 3
    dim: int = 1024
    heads: int = 16
    dim_head: int = 64
    spatial_depth: int = 8
    temporal_depth: int = 8
    quant_dim: int = 32
    codebook_size: int = 8
    code_seq_len: int = 4
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    nsvq_threshold: float = 0.1
    nsvq_noise_scale: float = 0.1
    nsvq_init: str = "normal"
    nsvq_replace_from: str = "inputs"


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, h, w, dim): non-overlapping p x p patches, LayerNorm, Linear, LayerNorm."""

    def __init__(self, patch_size: int, channels: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        patch_dim = channels * patch_size * patch_size
        self.norm_in = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, c, height, width = image.shape
        p = self.patch_size
        # (c p1 p2) order inside a patch, as the reference's einops pattern
        patches = image.reshape(b, c, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5).flatten(3)
        return self.norm_out(self.proj(self.norm_in(patches)))


class ToPixels(nn.Module):
    """(B, h, w, dim) -> (B, 3, H, W) by a Linear per token (no sigmoid, as the reference)."""

    def __init__(self, patch_size: int, channels: int, dim: int):
        super().__init__()
        self.patch_size, self.channels = patch_size, channels
        self.proj = nn.Linear(dim, channels * patch_size * patch_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = tokens.shape
        p, c = self.patch_size, self.channels
        return self.proj(tokens).reshape(b, h, w, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h * p, w * p)


class LatentActionQuantization(nn.Module):
    def __init__(self, cfg: LAQConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"model.image_size={cfg.image_size} must be a multiple of model.patch_size={cfg.patch_size}")
        self.cfg = cfg
        self.grid = (cfg.image_size // cfg.patch_size,) * 2
        self.spatial_rel_pos_bias = ContinuousPositionBias(cfg.dim, cfg.heads)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.channels, cfg.dim)
        stack = dict(dim=cfg.dim, dim_head=cfg.dim_head, heads=cfg.heads, attn_dropout=cfg.attn_dropout,
                     ff_dropout=cfg.ff_dropout)
        self.enc_spatial_transformer = Transformer(depth=cfg.spatial_depth, **stack)
        self.enc_temporal_transformer = Transformer(depth=cfg.temporal_depth, **stack)
        self.vq = NSVQ(cfg.dim, cfg.codebook_size, cfg.quant_dim, cfg.code_seq_len, self.grid,
                       threshold=cfg.nsvq_threshold, noise_scale=cfg.nsvq_noise_scale, init=cfg.nsvq_init,
                       replace_from=cfg.nsvq_replace_from)
        # The reference builds the decoder with the *spatial* depth.
        self.dec_spatial_transformer = Transformer(depth=cfg.spatial_depth, cross_attn=True, **stack)
        self.to_pixels = ToPixels(cfg.patch_size, cfg.channels, cfg.dim)

    def _check(self, image: torch.Tensor, name: str) -> None:
        want = (self.cfg.channels, self.cfg.image_size, self.cfg.image_size)
        if image.ndim != 4 or tuple(image.shape[1:]) != want:
            raise ValueError(f"{name} must be (B, {want[0]}, {want[1]}, {want[2]}), got {tuple(image.shape)}")

    def encode(self, first_emb: torch.Tensor, future_emb: torch.Tensor, bias: torch.Tensor):
        """Patch embeddings (B, h, w, dim) x2 -> encoder tokens of each frame, (B, h*w, dim) x2."""
        b = first_emb.shape[0]
        h, w = self.grid
        tokens = torch.stack([first_emb, future_emb], dim=1)  # (B, 2, h, w, d)
        grid = (b, 2, h, w)
        x = self.enc_spatial_transformer(tokens.reshape(b * 2, h * w, -1), grid, "spatial", bias=bias)
        x = x.reshape(b, 2, h * w, -1).transpose(1, 2).reshape(b * h * w, 2, -1)  # attend over time per position
        x = self.enc_temporal_transformer(x, grid, "temporal")
        x = x.reshape(b, h * w, 2, -1)
        return x[:, :, 0], x[:, :, 1]

    def decode(self, first_emb: torch.Tensor, actions: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """First-frame patch embeddings (B, h, w, dim) + action tokens (B, L, dim) -> predicted frame (B, 3, H, W)."""
        b = first_emb.shape[0]
        h, w = self.grid
        x = self.dec_spatial_transformer(first_emb.reshape(b, h * w, -1), (b, 1, h, w), "spatial", bias=bias,
                                         context=actions)
        return self.to_pixels(x.reshape(b, h, w, -1))

    def forward(self, first: torch.Tensor, future: torch.Tensor) -> dict:
        """first, future: (B, 3, H, W) in [0, 1].

        Returns {"loss": scalar pixel MSE, "recon": (B, 3, H, W) predicted future, "indices": (B, L) int64 code ids,
        "perplexity": scalar (codebook usage in this batch, all positions pooled)}.
        """
        self._check(first, "first")
        self._check(future, "future")
        bias = self.spatial_rel_pos_bias(*self.grid)  # once per forward, shared by encoder and decoder
        first_emb, future_emb = self.patch_embed(first), self.patch_embed(future)
        first_tokens, future_tokens = self.encode(first_emb, future_emb, bias)
        actions, indices, perplexity = self.vq(first_tokens, future_tokens)
        # Queries are the first frame's patch embeddings, detached (as LAPA): the decoder cannot shape the embedding.
        recon = self.decode(first_emb.detach(), actions, bias)
        loss = F.mse_loss(recon.float(), future.float())
        return {"loss": loss, "recon": recon, "indices": indices, "perplexity": perplexity}

    @torch.no_grad()
    def decode_codes(self, first: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Predict the future frame from the first frame and chosen code ids (B, L): (B, 3, H, W)."""
        self._check(first, "first")
        bias = self.spatial_rel_pos_bias(*self.grid)
        codes = self.vq.codebooks[indices.reshape(-1)]
        actions = self.vq.project_out(codes).reshape(first.shape[0], self.cfg.code_seq_len, -1)
        return self.decode(self.patch_embed(first), actions, bias)


def build_model(model_cfg) -> LatentActionQuantization:
    """Model from a config mapping (the Hydra `model` group); unknown keys are errors naming them."""
    values = dict(model_cfg)
    values.pop("name", None)
    nsvq = dict(values.pop("nsvq", {}) or {})
    values.update({f"nsvq_{key}": value for key, value in nsvq.items() if key != "replace_schedule"})
    known = set(LAQConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown model config keys {unknown}; known: {sorted(known)}")
    return LatentActionQuantization(LAQConfig(**values))
