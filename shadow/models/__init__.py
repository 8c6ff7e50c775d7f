"""Shadow generators with one interface: encode_target, encode_condition, forward (the velocity), decode.

    build_model("unet", image_size)                       # pixel-space UNet (default)
    build_model("sdxl", image_size, pretrained_path=DIR)  # SDXL UNet + frozen VAE from a local folder
"""
from __future__ import annotations

from torch import nn

from shadow.models.unet import UNET_CONFIGS, ShadowUNet, unet_config

BACKBONES = ("unet", "sdxl")


def build_model(backbone: str, image_size: int, pretrained_path: str | None = None) -> nn.Module:
    if backbone == "unet":
        return ShadowUNet(unet_config(image_size))
    if backbone == "sdxl":
        from shadow.models.sdxl import load_sdxl  # diffusers is imported only when asked for

        if image_size % 8:
            raise ValueError(f"--backbone sdxl needs an image_size divisible by 8, got {image_size}.")
        return load_sdxl(pretrained_path)
    raise ValueError(f"Unknown backbone {backbone!r}; use one of {BACKBONES}.")


def trainable_state(model: nn.Module) -> dict:
    """The state to checkpoint: everything except a frozen VAE (which is reloaded from the local folder)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("vae.")}


def load_trainable_state(model: nn.Module, state: dict) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("vae.")]
    if missing or unexpected:
        raise RuntimeError(f"Checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


__all__ = ["BACKBONES", "UNET_CONFIGS", "build_model", "trainable_state", "load_trainable_state"]
