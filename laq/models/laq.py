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

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from laq.models.attention import ContinuousPositionBias, Transformer
from laq.models.nsvq import NSVQ


@dataclass
class NSVQConfig:
    """Dead-code replacement of the quantiser (`model.nsvq.*`); see laq/models/nsvq.py."""
    threshold: float = 0.1          # dead below this (see threshold_mode)
    threshold_mode: str = "batch"   # batch: hits / global batch < threshold (LAPA); share: hits / all hits <
    #                                 threshold / codebook_size (a fraction of the uniform share: relative to usage)
    replace_from: str = "inputs"    # inputs: the last batch's (future - first) vectors | codes: live codes (LAPA)
    noise_scale: float = 0.1        # replacement noise std, relative to the per-dimension spread of the pool
    codebook_loss_weight: float = 0.0  # > 0: add weight * |sg(input) - code|^2 (k-means pull; LAPA: none)
    init: str = "normal"            # normal | uniform
    replace_schedule: List[List[int]] = field(
        default_factory=lambda: [[10, 100], [100, 1000], [500, 5000]])  # [every, until]: LAPA's 26 events


@dataclass
class LAQConfig:
    """Model hyper-parameters (the `model` config group); the defaults are LAPA's paper size (laq_lapa).

    lapa_compat: compute as LAPA's code does, including its two layout bugs (the temporal PEG convolves the
    un-permuted `(b h w) t d` tokens; each action token mixes components of all codes), so LAPA's released weights
    give LAPA's outputs. False (default) is the corrected model.
    decoder_output: what the decoder's last layer predicts. "frame": the future frame itself (LAPA). "residual": the
    change on top of frame t, future = first + output. "warp": a motion field (one vector per patch, bilinearly
    interpolated) and a residual, future = first warped by the field + residual, so a latent action that says
    "this region moves left" acts on any content. For "residual" and "warp" the output layers start at zero:
    training starts from the copy-frame baseline.
    warp_residual_scale: "warp" only: future = warped first + warp_residual_scale * residual. Below 1 the residual
    moves slower (Adam steps the weights by the lr whatever the scale, so the residual's output changes this many
    times slower) and the motion field, which only the codes can point the right way, explains the change first;
    0 is a pure warp.
    init_from: a checkpoint (LAPA's or ours) whose weights start a new run (not a resume: new optimizer, step 0).
    """
    name: str = "laq_lapa"
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
    lapa_compat: bool = False
    decoder_output: str = "frame"
    warp_residual_scale: float = 1.0
    init_from: Optional[str] = None
    nsvq: NSVQConfig = field(default_factory=NSVQConfig)


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


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image (B, C, H, W) sampled at each pixel + flow (B, 2, H, W; x then y, in pixels), bilinear, border padding:
    output[p] = image[p + flow[p]] (backward warping)."""
    b, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=image.dtype),
                            torch.arange(width, device=image.device, dtype=image.dtype), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(height - 1, 1)) - 1
    return F.grid_sample(image, torch.stack([x, y], dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


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
        nsvq = cfg.nsvq
        self.vq = NSVQ(cfg.dim, cfg.codebook_size, cfg.quant_dim, cfg.code_seq_len, self.grid,
                       threshold=nsvq.threshold, threshold_mode=nsvq.threshold_mode, noise_scale=nsvq.noise_scale,
                       init=nsvq.init, replace_from=nsvq.replace_from, lapa_compat=cfg.lapa_compat)
        # The reference builds the decoder with the *spatial* depth.
        self.dec_spatial_transformer = Transformer(depth=cfg.spatial_depth, cross_attn=True, **stack)
        if cfg.decoder_output not in ("frame", "residual", "warp"):
            raise ValueError(f"model.decoder_output={cfg.decoder_output!r}; use 'frame', 'residual' or 'warp'")
        if cfg.warp_residual_scale < 0:
            raise ValueError(f"model.warp_residual_scale={cfg.warp_residual_scale} must be >= 0")
        self.to_pixels = ToPixels(cfg.patch_size, cfg.channels, cfg.dim)
        # "warp": one motion vector (x, y in pixels) per patch, interpolated to every pixel: a smooth field, so a
        # latent action that moves a region acts the same on any content.
        self.to_flow = nn.Linear(cfg.dim, 2) if cfg.decoder_output == "warp" else None
        if cfg.decoder_output != "frame":  # start from "future = first": the copy-frame baseline, then learn the change
            for layer in (self.to_pixels.proj, self.to_flow):
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        # LAPA reshapes the temporal stack's (b h w) t d tokens for its PEG as if they were (b t) (h w) d.
        self._temporal_layout = "temporal_lapa" if cfg.lapa_compat else "temporal"

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
        x = self.enc_temporal_transformer(x, grid, self._temporal_layout)
        x = x.reshape(b, h * w, 2, -1)
        return x[:, :, 0], x[:, :, 1]

    def decode(self, first: torch.Tensor, first_emb: torch.Tensor, actions: torch.Tensor,
               bias: torch.Tensor) -> torch.Tensor:
        """Frame t (B, 3, H, W), its patch embeddings (B, h, w, dim) and action tokens (B, L, dim) -> predicted
        frame t+offset (B, 3, H, W)."""
        b = first_emb.shape[0]
        h, w = self.grid
        x = self.dec_spatial_transformer(first_emb.reshape(b, h * w, -1), (b, 1, h, w), "spatial", bias=bias,
                                         context=actions)
        tokens = x.reshape(b, h, w, -1)
        pixels = self.to_pixels(tokens)
        if self.cfg.decoder_output == "frame":
            return pixels
        first = first.to(pixels.dtype)
        if self.cfg.decoder_output == "residual":
            return first + pixels
        flow = self.to_flow(tokens).permute(0, 3, 1, 2)  # (B, 2, h, w) pixels, at patch centres
        flow = F.interpolate(flow, size=first.shape[-2:], mode="bilinear", align_corners=False)
        return warp(first, flow) + self.cfg.warp_residual_scale * pixels

    def forward(self, first: torch.Tensor, future: torch.Tensor) -> dict:
        """first, future: (B, 3, H, W) in [0, 1].

        Returns {"loss": pixel MSE (+ codebook_loss_weight * codebook_error), "recon_loss": pixel MSE,
        "codebook_error": mean squared code-to-input distance, "recon": (B, 3, H, W) predicted future,
        "indices": (B, L) int64 code ids, "perplexity": scalar (codebook usage in this batch, positions pooled)}.
        """
        self._check(first, "first")
        self._check(future, "future")
        bias = self.spatial_rel_pos_bias(*self.grid)  # once per forward, shared by encoder and decoder
        first_emb, future_emb = self.patch_embed(first), self.patch_embed(future)
        first_tokens, future_tokens = self.encode(first_emb, future_emb, bias)
        actions, indices, perplexity, codebook_error = self.vq(first_tokens, future_tokens)
        # Queries are the first frame's patch embeddings, detached (as LAPA): the decoder cannot shape the embedding.
        recon = self.decode(first, first_emb.detach(), actions, bias)
        recon_loss = F.mse_loss(recon.float(), future.float())
        loss = recon_loss
        if self.cfg.nsvq.codebook_loss_weight:  # NSVQ's codes follow the inputs only slowly; this pulls them in
            loss = loss + self.cfg.nsvq.codebook_loss_weight * codebook_error
        return {"loss": loss, "recon_loss": recon_loss, "codebook_error": codebook_error, "recon": recon,
                "indices": indices, "perplexity": perplexity}

    @torch.no_grad()
    def decode_codes(self, first: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Predict the future frame from the first frame and chosen code ids (B, L): (B, 3, H, W)."""
        self._check(first, "first")
        bias = self.spatial_rel_pos_bias(*self.grid)
        return self.decode(first, self.patch_embed(first), self.vq.actions_from_codes(indices), bias)


def model_config(model_cfg: Mapping[str, Any] | LAQConfig) -> LAQConfig:
    """A typed LAQConfig from a mapping (the Hydra `model` group, or a checkpoint's saved config): unknown keys and
    values of the wrong type are errors naming the key; missing keys take LAQConfig's defaults."""
    if isinstance(model_cfg, LAQConfig):
        return model_cfg
    values = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    schema = OmegaConf.structured(LAQConfig)
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, values))
    except OmegaConfBaseException as exc:  # ValidationError / ConfigKeyError: the message names the key
        raise ValueError(f"Invalid model config: {exc}") from exc


def build_model(model_cfg: Mapping[str, Any] | LAQConfig) -> LatentActionQuantization:
    """Model from a config mapping or LAQConfig; unknown keys and wrongly typed values are errors naming them."""
    return LatentActionQuantization(model_config(model_cfg))
