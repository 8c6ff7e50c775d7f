"""VanillaVAE: a convolutional encoder to a diagonal Gaussian latent, and a mirrored decoder ending in Tanh.

Images live in [-1, 1] (the Tanh range) everywhere inside this module; `to_model_range` / `to_unit_range`
convert from and to [0, 1] at the edges (data loading, metrics, image logging).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_model_range(images_01: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> [-1, 1], the range the decoder's Tanh produces."""
    return images_01 * 2.0 - 1.0


def to_unit_range(images_pm1: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> [0, 1], clamped (for metrics with data range 1 and for image logging)."""
    return ((images_pm1 + 1.0) * 0.5).clamp(0.0, 1.0)


def _down_stage(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1),
                         nn.BatchNorm2d(out_ch), nn.LeakyReLU())


def _up_stage(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1, output_padding=1),
                         nn.BatchNorm2d(out_ch), nn.LeakyReLU())


class VanillaVAE(nn.Module):
    """Encoder: one Conv(k3, s2) + BN + LeakyReLU stage per entry of `hidden_dims`, so an image of side S becomes
    hidden_dims[-1] x S/2^n x S/2^n, flattened into Linear heads for mu and log sigma^2. Decoder: the mirror
    image, with the last x2 upsampling in `final_layer` followed by a 3x3 conv to `in_channels` and Tanh.

    Unlike the reference code, the list passed in is never reversed in place, and the reshape before the
    decoder is derived from `image_size` and `hidden_dims` instead of being hard-coded.
    """

    def __init__(self, in_channels: int = 3, latent_dim: int = 256,
                 hidden_dims: list[int] | tuple[int, ...] = (64, 128, 256, 512, 1024), image_size: int = 256):
        super().__init__()
        hidden_dims = list(hidden_dims)
        if not hidden_dims:
            raise ValueError("hidden_dims must list at least one channel count")
        n_down = len(hidden_dims)
        if image_size % (2 ** n_down) != 0:
            raise ValueError(f"image_size={image_size} must be divisible by 2^len(hidden_dims) = {2 ** n_down} "
                             f"(each of the {n_down} encoder stages halves the side)")
        self.in_channels, self.latent_dim, self.image_size = in_channels, latent_dim, image_size
        self.hidden_dims = tuple(hidden_dims)
        self.bottom_side = image_size // (2 ** n_down)
        self.bottom_shape = (hidden_dims[-1], self.bottom_side, self.bottom_side)
        flat = hidden_dims[-1] * self.bottom_side ** 2

        channels = [in_channels] + hidden_dims
        self.encoder = nn.Sequential(*[_down_stage(channels[i], channels[i + 1]) for i in range(n_down)])
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_var = nn.Linear(flat, latent_dim)

        self.decoder_input = nn.Linear(latent_dim, flat)
        reversed_dims = hidden_dims[::-1]
        self.decoder = nn.Sequential(*[_up_stage(reversed_dims[i], reversed_dims[i + 1])
                                       for i in range(n_down - 1)])
        self.final_layer = nn.Sequential(
            _up_stage(hidden_dims[0], hidden_dims[0]),
            nn.Conv2d(hidden_dims[0], in_channels, kernel_size=3, padding=1),
            nn.Tanh(),
        )

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, S, S) in [-1, 1] -> (mu, log_var), each (B, latent_dim)."""
        features = torch.flatten(self.encoder(images), start_dim=1)
        return self.fc_mu(features), self.fc_var(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> images (B, C, S, S) in [-1, 1]."""
        features = self.decoder_input(z).view(-1, *self.bottom_shape)
        return self.final_layer(self.decoder(features))

    @staticmethod
    def reparameterize(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) from the global torch RNG (restored on resume)."""
        std = torch.exp(0.5 * log_var)
        return mu + std * torch.randn_like(std)

    def forward(self, images: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """images (B, C, S, S) in [-1, 1] -> {"recons": (B, C, S, S) in [-1, 1], "mu", "log_var": (B, latent)}.

        sample=False decodes the mean (deterministic; used for validation and comparisons).
        """
        mu, log_var = self.encode(images)
        z = self.reparameterize(mu, log_var) if sample else mu
        return {"recons": self.decode(z), "mu": mu, "log_var": log_var}

    @torch.no_grad()
    def sample(self, num_samples: int, device: torch.device | str,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I): (num_samples, C, S, S) in [-1, 1]. A generator keeps the global RNG untouched."""
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(device)
        return self.decode(z)


def kl_per_dim(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample and latent dimension, in nats: (B, latent) -> (B, latent), >= 0."""
    return -0.5 * (1.0 + log_var - mu.pow(2) - log_var.exp())


def vae_loss(recons: torch.Tensor, images: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
             kld_weight: float) -> dict[str, torch.Tensor]:
    """loss = MSE (mean over all B*C*H*W elements, [-1, 1] units) + kld_weight * KLD, where
    KLD = batch mean of the per-sample KL summed over latent dimensions (nats, positive).

    Returns {"loss", "recon", "kld"} scalars and "kld_per_dim" (latent,), the batch mean per dimension.
    """
    recon = F.mse_loss(recons.float(), images.float())
    kl = kl_per_dim(mu.float(), log_var.float())
    kld = kl.sum(dim=1).mean()
    return {"loss": recon + kld_weight * kld, "recon": recon, "kld": kld, "kld_per_dim": kl.mean(dim=0)}


def build_model(model_params: dict) -> VanillaVAE:
    """The model described by the config's `model_params` section (its `name` must be VanillaVAE)."""
    if model_params.get("name", "VanillaVAE") != "VanillaVAE":
        raise ValueError(f"model_params.name={model_params['name']!r}: only 'VanillaVAE' is implemented here")
    return VanillaVAE(in_channels=model_params["in_channels"], latent_dim=model_params["latent_dim"],
                      hidden_dims=model_params["hidden_dims"], image_size=model_params["image_size"])
