"""Sinusoidal embeddings of the timestep and of the light parameters (θ, φ, size), as SDXL embeds its scalars."""
from __future__ import annotations

import math

import torch
from torch import nn

LIGHT_DIM = 256  # per scalar; θ, φ and size together give the paper's 768-vector


def sinusoidal_embedding(values: torch.Tensor, dim: int = LIGHT_DIM, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) raw scalars -> (B, dim) float32 as [cos(v f_i), sin(v f_i)] with f_i = max_period^(-i / (dim/2)),
    i = 0 .. dim/2 - 1. Identical to diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    angles = values.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def light_vector(theta: torch.Tensor, phi: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(B,) θ in degrees, φ in degrees, size in world units (raw values, not normalised) -> (B, 768)."""
    return torch.cat([sinusoidal_embedding(theta), sinusoidal_embedding(phi), sinusoidal_embedding(size)], dim=1)


class LightEmbedding(nn.Module):
    """768-d light vector -> MLP -> (B, out_dim), added to the time embedding. The last layer starts at zero, so
    a pretrained backbone's behaviour is unchanged at step 0 (and the light signal grows in during training)."""

    def __init__(self, out_dim: int, zero_init: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * LIGHT_DIM, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, theta: torch.Tensor, phi: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        vector = light_vector(theta, phi, size).to(self.mlp[0].weight.dtype)
        return self.mlp(vector)
