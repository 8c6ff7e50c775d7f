"""VQ-VAE over RoI features: encoder MLP → nearest codebook entry (straight-through) → decoder MLP.

Loss (van den Oord et al. 2017): ‖decode(q) − x‖² + ‖sg(z) − e‖² + β‖z − sg(e)‖², β = -commitment_cost.
The codebook is a parameter that only the vqvae stage trains by gradient; the optimal-transport step
(vidsgg.models.scenellm.ot) moves it in every stage.
"""
from __future__ import annotations

import torch
from torch import nn


class VQVAE(nn.Module):
    """features (N, C4) -> dict: latent z (N, D), quantized q (N, D, straight-through), codes (N,) long,
    and the three loss terms (scalars) reconstruction / codebook / commitment (unweighted)."""

    def __init__(self, feature_dim: int, latent_dim: int, codebook_size: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(feature_dim, latent_dim), nn.ReLU(inplace=True),
                                     nn.Linear(latent_dim, latent_dim))
        self.codebook = nn.Parameter(torch.empty(codebook_size, latent_dim))
        nn.init.uniform_(self.codebook, -1.0 / codebook_size, 1.0 / codebook_size)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.ReLU(inplace=True),
                                     nn.Linear(latent_dim, feature_dim))

    def quantize(self, latent: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the nearest codebook entry (squared Euclidean; no gradient)."""
        codebook = self.codebook.detach()
        distance = latent.pow(2).sum(1, keepdim=True) - 2 * latent @ codebook.T + codebook.pow(2).sum(1)[None]
        return distance.argmin(1)

    def forward(self, features: torch.Tensor, reconstruct: bool = True) -> dict:
        latent = self.encoder(features)
        codes = self.quantize(latent.detach())
        chosen = self.codebook[codes]
        quantized = latent + (chosen - latent).detach()  # straight-through: the gradient of q reaches z
        out = {"latent": latent, "quantized": quantized, "codes": codes}
        if reconstruct:
            out["reconstruction"] = nn.functional.mse_loss(self.decoder(quantized), features)
            out["codebook"] = nn.functional.mse_loss(chosen, latent.detach())
            out["commitment"] = nn.functional.mse_loss(latent, chosen.detach())
        return out
