"""Parameters per part of the stereo model, built on the meta device (no memory, no weights file needed).

    python -m stereo.summary --config stereo/configs/train/stereo_v1.json

Ends with the line `total_params: N` (all parameters, including a frozen ViT branch).
"""
from __future__ import annotations

import argparse
import torch

from stereo.core.model import build_model
from stereo.train.config import load_config


def summarise(model_cfg: dict) -> list[tuple[str, int, int]]:
    """[(part, parameters, trainable)] for the model's top-level parts, then ("total", ...)."""
    with torch.device("meta"):
        model = build_model(model_cfg, load_pretrained=False)  # meta tensors cannot take loaded weights
    rows = [(name, sum(p.numel() for p in part.parameters()),
             sum(p.numel() for p in part.parameters() if p.requires_grad)) for name, part in model.named_children()]
    rows.append(("total", sum(p.numel() for p in model.parameters()),
                 sum(p.numel() for p in model.parameters() if p.requires_grad)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    rows = summarise(load_config(args.config)["model"])
    print(f"{'part':<14} {'params':>12} {'trainable':>12}")
    for name, count, trainable in rows[:-1]:
        print(f"{name:<14} {count:>12,} {trainable:>12,}")
    total = rows[-1][1]
    print(f"{'trainable':<14} {rows[-1][2]:>12,}")
    print(f"total_params: {total}")
    return total


if __name__ == "__main__":
    main()
