"""Parameters per part of the VanillaVAE, built on the meta device (no memory used).

    python -m vae_latent.summary [--config vae_latent/config_vae_sthv2.yaml] [--set model_params.latent_dim=128]

The last line is `total_params: N` (the spec config: 62,980,803).
"""
from __future__ import annotations

import argparse

import torch

from vae_latent.vae_config import load_config
from vae_latent.vanilla_vae_model import build_model


def parameter_table(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(part name, parameter count) for each top-level child of the model."""
    return [(name, sum(p.numel() for p in child.parameters())) for name, child in model.named_children()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the spec config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE")
    args = parser.parse_args(argv)
    model_params = load_config(args.config, args.overrides)["model_params"]
    with torch.device("meta"):
        model = build_model(model_params)
    rows = parameter_table(model)
    total = sum(count for _, count in rows)
    side = model_params["image_size"]
    print(f"VanillaVAE: {model_params['in_channels']}x{side}x{side} -> latent {model_params['latent_dim']}, "
          f"hidden_dims {model_params['hidden_dims']}, bottleneck {'x'.join(map(str, model.bottom_shape))}")
    for name, count in rows:
        print(f"  {name:<14} {count:>12,}  ({100 * count / total:5.1f} %)")
    print(f"  fp32 weights {4 * total / 1e6:.0f} MB; with Adam moments {12 * total / 1e6:.0f} MB")
    print(f"total_params: {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
