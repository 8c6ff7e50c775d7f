"""Parameters per part and estimated forward GFLOPs per sample of a LAQ model, built on the meta device.

    python -m laq.summary model=laq_lapa          # the paper size (343,796,080 parameters), no memory used
    python -m laq.summary model=laq_tiny data.image_size=64
Overrides are Hydra overrides of laq/config/config.yaml. The last line is `total_params: N`.
"""
from __future__ import annotations

import sys

import torch

from laq.config_schema import compose_config
from laq.models import build_model



def forward_gflops(cfg) -> tuple[float, float]:
    """(GFLOPs per sample excluding the position-bias MLP, GFLOPs of that MLP per batch), 2 FLOPs per MAC.

    Counts the matrix products (projections, attention, GEGLU, embeddings, conv PEG); norms and softmax are
    ignored. The bias MLP runs on the (2h-1)(2w-1) distinct offsets once per forward (LAPA: twice, on all pairs).
    """
    d, heads, dh = cfg.dim, cfg.heads, cfg.dim_head
    inner, ff = heads * dh, int(4 * 2 / 3 * d)
    h = w = cfg.image_size // cfg.patch_size
    n, patch_dim, L = h * w, cfg.channels * cfg.patch_size ** 2, cfg.code_seq_len
    proj = d * inner * 4  # q, k, v, out per token
    ffn = d * 2 * ff + ff * d
    peg = 27 * d
    spatial = 2 * n * cfg.spatial_depth * (proj + ffn + peg + 2 * n * inner)
    temporal = 2 * n * cfg.temporal_depth * (proj + ffn + peg + 2 * 2 * inner)
    cross = d * inner * 2 + 2 * (L + 2) * inner + L * 2 * d * inner / n  # q, out per query; kv on L tokens
    decoder = n * cfg.spatial_depth * (proj + ffn + peg + 2 * n * inner + cross)
    embed = 2 * n * patch_dim * d + n * d * patch_dim
    macs = spatial + temporal + decoder + embed
    bias_mlp = (2 * h - 1) * (2 * w - 1) * (2 * d + d * d + d * heads)
    return 2 * macs / 1e9, 2 * bias_mlp / 1e9


def main(argv: list[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    cfg = compose_config(overrides)
    with torch.device("meta"):
        model = build_model(cfg.model)
    print(f"model: {cfg.model.name} (image {cfg.model.image_size}, patch {cfg.model.patch_size}, dim {cfg.model.dim}, "
          f"{cfg.model.heads}x{cfg.model.dim_head} heads, depth {cfg.model.spatial_depth}+{cfg.model.temporal_depth})")
    total = 0
    for name, child in model.named_children():
        count = sum(p.numel() for p in child.parameters())
        total += count
        print(f"  {name:<28} {count:>14,d}")
    per_sample, bias_per_batch = forward_gflops(model.cfg)
    print(f"forward GFLOPs per sample: {per_sample:.2f} (+ {bias_per_batch:.3f} per batch for the position-bias MLP)")
    print(f"train GFLOPs per sample (~3x forward): {3 * per_sample:.1f}")
    print(f"total_params: {total}")


if __name__ == "__main__":
    main()
