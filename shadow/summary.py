"""Parameter counts per part of the shadow generator, built on the meta device (no memory, no weights).

    python -m shadow.summary --backbone unet --image_size 512
    python -m shadow.summary --backbone sdxl      # the SDXL-base UNet after the surgery (config facts, no files)
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import torch
from torch import nn

from shadow.models import BACKBONES
from shadow.models.unet import ShadowUNet, unet_config


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_on_meta(backbone: str, image_size: int) -> tuple[nn.Module, "OrderedDict[str, nn.Module]"]:
    """The paper-size model on the meta device and its parts to report."""
    with torch.device("meta"):
        if backbone == "unet":
            model = ShadowUNet(unet_config(image_size))
            parts = OrderedDict([("time_mlp", model.time_mlp), ("light_mlp", model.light), ("conv_in", model.conv_in),
                                 ("down", model.down), ("mid", model.mid), ("up", model.up),
                                 ("out", nn.ModuleList([model.norm_out, model.conv_out]))])
            return model, parts
        from diffusers import UNet2DConditionModel

        from shadow.models.sdxl import SDXL_UNET_CONFIG, shadow_surgery

        unet = shadow_surgery(UNet2DConditionModel.from_config(SDXL_UNET_CONFIG))
        parts = OrderedDict([("time_embedding", unet.time_embedding), ("light add_embedding", unet.add_embedding),
                             ("conv_in (9 ch)", unet.conv_in), ("down_blocks", unet.down_blocks),
                             ("mid_block", unet.mid_block), ("up_blocks", unet.up_blocks),
                             ("out", nn.ModuleList([unet.conv_norm_out, unet.conv_out]))])
        return unet, parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=BACKBONES, default="unet")
    parser.add_argument("--image_size", type=int, default=1024)
    args = parser.parse_args(argv)
    model, parts = build_on_meta(args.backbone, args.image_size)
    print(f"backbone={args.backbone} image_size={args.image_size}")
    for name, part in parts.items():
        print(f"{name:<22} {count(part):>14,d}")
    total = count(model)
    print(f"total_params: {total}")
    return total


if __name__ == "__main__":
    main()
