"""The `sdxl` backbone: diffusers' SDXL UNet and VAE from a local folder, with the paper's surgery.

    <pretrained_path>/unet/{config.json, diffusion_pytorch_model[.fp16].safetensors|.bin}
    <pretrained_path>/vae/{config.json, diffusion_pytorch_model[.fp16].safetensors|.bin}

Surgery: every transformer block loses its cross-attention (attn2 = None, norm2 = None, so text is not merely
ignored but absent); conv_in takes 9 channels [z_t (4), mask (1), z_object (4)] with zero weights on the 5 new
ones; the light (θ, φ, size) goes through SDXL's micro-conditioning path: `add_time_proj` makes the three 256-d
sinusoids and a new `add_embedding` MLP (768 -> time_embed_dim, last layer zero-initialised) adds them to the
timestep embedding. The VAE is frozen and always runs in fp32 (the SDXL VAE overflows in fp16).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shadow.models.embedding import LIGHT_DIM

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")

# The published SDXL-base UNet config (the facts needed to count its parameters on the meta device).
SDXL_UNET_CONFIG = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)

# A tiny SDXL-shaped pair for tests and `check_model.py --tiny`: same block types and conditioning path.
TINY_UNET_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 1), attention_head_dim=(2, 4), cross_attention_dim=32, norm_num_groups=8,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=LIGHT_DIM,
    projection_class_embeddings_input_dim=32 + 6 * LIGHT_DIM,
)
TINY_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D",) * 2,
    norm_num_groups=8, sample_size=16, scaling_factor=0.13025,
)


class PretrainedFolderError(FileNotFoundError):
    """The local SDXL folder is missing or incomplete; the message says which file and what is expected."""


def check_pretrained_folder(path: str | os.PathLike | None) -> Path:
    """Path of a complete local SDXL folder (unet/ and vae/ with config and weights), else a clear error."""
    if path is None or str(path) == "":
        raise PretrainedFolderError("--backbone sdxl needs --pretrained_path pointing at a local SDXL folder "
                                    "with unet/ and vae/ (nothing is downloaded).")
    root = Path(path)
    if not root.is_dir():
        raise PretrainedFolderError(f"SDXL folder not found: {root}")
    for part in ("unet", "vae"):
        if not (root / part / "config.json").is_file():
            raise PretrainedFolderError(f"SDXL folder {root} is incomplete: {root / part / 'config.json'} is missing.")
        if not any((root / part / name).is_file() for name in WEIGHT_NAMES):
            raise PretrainedFolderError(f"SDXL folder {root} is incomplete: no weights in {root / part} "
                                        f"(expected one of {', '.join(WEIGHT_NAMES)}).")
    return root


def remove_cross_attention(unet: nn.Module) -> int:
    """Delete attn2 (and its norm2) from every transformer block; returns how many blocks were changed."""
    changed = 0
    for module in unet.modules():
        if getattr(module, "attn2", None) is not None:
            module.attn2 = None
            module.norm2 = None
            changed += 1
    return changed


def widen_conv_in(unet: nn.Module, in_channels: int = 9) -> None:
    """conv_in with `in_channels` inputs: the old weights on the first channels, zeros on the new ones."""
    old = unet.conv_in
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)


def replace_light_embedding(unet: nn.Module) -> None:
    """add_embedding: 3 x 256 sinusoids of (θ, φ, size) -> time_embed_dim; last layer zero so SDXL starts as is."""
    from diffusers.models.embeddings import TimestepEmbedding

    if unet.config.addition_time_embed_dim != LIGHT_DIM:
        raise ValueError(f"The UNet's addition_time_embed_dim is {unet.config.addition_time_embed_dim}; the light "
                         f"embedding needs {LIGHT_DIM} (as SDXL).")
    time_embed_dim = unet.time_embedding.linear_2.out_features
    device = unet.conv_in.weight.device
    unet.add_embedding = TimestepEmbedding(3 * LIGHT_DIM, time_embed_dim).to(device)
    if device.type != "meta":
        nn.init.zeros_(unet.add_embedding.linear_2.weight)
        nn.init.zeros_(unet.add_embedding.linear_2.bias)


def shadow_surgery(unet: nn.Module) -> nn.Module:
    remove_cross_attention(unet)
    widen_conv_in(unet, 2 * unet.config.out_channels + 1)
    replace_light_embedding(unet)
    return unet


class SDXLShadowBackend(nn.Module):
    """Latent-space backend: x0 = E([s, s, s]) * scaling, cond = [mask resized to the latent, E(object)]."""

    def __init__(self, unet: nn.Module, vae: nn.Module):
        super().__init__()
        self.unet = shadow_surgery(unet)
        self.vae = vae.float().eval().requires_grad_(False)
        self.scaling = float(vae.config.scaling_factor)
        self.target_channels = unet.config.out_channels

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()  # frozen: never in training mode
        return self

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latent mean (B, 4, H/f, W/f), fp32 outside autocast."""
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):
            return self.vae.encode(image.float()).latent_dist.mean * self.scaling

    def encode_target(self, shadow_map: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> latent of the 3-channel copy [s, s, s] mapped to [-1, 1]."""
        return self._encode(shadow_map.repeat(1, 3, 1, 1) * 2 - 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent -> (B, 1, H, W) shadow strength in [0, 1] from channel 0 of the decoded image."""
        with torch.no_grad(), torch.autocast(latent.device.type, enabled=False):
            image = self.vae.decode(latent.float() / self.scaling).sample
        return ((image[:, :1] + 1) / 2).clamp(0, 1)

    def encode_condition(self, mask: torch.Tensor, object_image: torch.Tensor) -> torch.Tensor:
        """mask (B, 1, H, W), object (B, 3, H, W) in [-1, 1] -> (B, 5, h, w): [mask at latent size, E(object)]."""
        object_latent = self._encode(object_image)
        small_mask = (F.interpolate(mask.float(), size=object_latent.shape[-2:], mode="area") > 0.5).float()
        return torch.cat([small_mask, object_latent], dim=1)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, theta: torch.Tensor,
                phi: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """x_t (B, 4, h, w), t (B,) in [0, 1], cond (B, 5, h, w), light (B,) raw -> velocity (B, 4, h, w)."""
        batch = x_t.shape[0]
        added = {"text_embeds": x_t.new_zeros(batch, 0),
                 "time_ids": torch.stack([theta, phi, size], dim=1).float()}
        sample = torch.cat([x_t, cond.to(x_t.dtype)], dim=1)
        return self.unet(sample, 1000.0 * t, encoder_hidden_states=None, added_cond_kwargs=added).sample


def load_sdxl(pretrained_path: str | os.PathLike | None) -> SDXLShadowBackend:
    """Load unet/ and vae/ from a complete local folder (offline; never the hub) and apply the surgery."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    root = check_pretrained_folder(pretrained_path)
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: local_files_only already forbids downloads
    variant = {}
    if not any((root / "unet" / n).is_file() for n in WEIGHT_NAMES if ".fp16." not in n):
        variant = {"variant": "fp16"}
    unet = UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True, torch_dtype=torch.float32,
                                                **variant)
    vae_variant = {} if any((root / "vae" / n).is_file() for n in WEIGHT_NAMES if ".fp16." not in n) \
        else {"variant": "fp16"}
    vae = AutoencoderKL.from_pretrained(root / "vae", local_files_only=True, torch_dtype=torch.float32,
                                        **vae_variant)
    return SDXLShadowBackend(unet, vae)


def build_from_configs(unet_config: dict, vae_config: dict) -> SDXLShadowBackend:
    """An untrained backend from diffusers config dicts (the tiny test model, or the paper size on meta)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return SDXLShadowBackend(UNet2DConditionModel.from_config(unet_config), AutoencoderKL.from_config(vae_config))
