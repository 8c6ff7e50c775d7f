"""Forward/backward check of the shadow generator: builds the model, runs dummy inputs through the training loss
in fp32 and in the chosen autocast dtype, back-propagates, and checks that every trainable parameter got a finite
gradient. Exits non-zero on any failure.

    python shadow/scripts/check_model.py --backbone unet --image_size 64
    python shadow/scripts/check_model.py --backbone sdxl --pretrained_path /models/sdxl --mixed_precision bf16
    python shadow/scripts/check_model.py --backbone sdxl --tiny        # a tiny random SDXL-shaped model
"""
from __future__ import annotations

import argparse
import sys

import torch

from common.amp import autocast, parse_precision
from shadow.flow import sample, training_loss
from shadow.models import BACKBONES, build_model


def dummy_batch(batch_size: int, image_size: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, 1, image_size, image_size)
    batch = {"shadow_map": torch.rand(shape, generator=generator),
             "mask": (torch.rand(shape, generator=generator) > 0.5).float(),
             "object_image": torch.rand((batch_size, 3, image_size, image_size), generator=generator) * 2 - 1,
             "theta": torch.tensor([30.0, 10.0] * batch_size)[:batch_size],
             "phi": torch.tensor([0.0, 200.0] * batch_size)[:batch_size],
             "size": torch.tensor([2.0, 8.0] * batch_size)[:batch_size]}
    return {k: v.to(device) for k, v in batch.items()}


def check(model: torch.nn.Module, batch: dict, device: torch.device, dtype: torch.dtype) -> list[str]:
    """Problems found in one forward + backward under `dtype` autocast (empty list = all good)."""
    problems = []
    model.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = training_loss(model, batch)
    if not torch.isfinite(loss):
        return [f"{dtype}: loss is {loss.item()}"]
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with_grad = [n for n, p in trainable if p.grad is not None]
    print(f"[{dtype}] loss={loss.item():.4f}  Parameters with gradients: {len(with_grad)}/{len(trainable)}")
    missing = [n for n, p in trainable if p.grad is None]
    if missing:
        problems.append(f"{dtype}: {len(missing)} parameters got no gradient, e.g. {missing[:3]}")
    bad = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        problems.append(f"{dtype}: non-finite gradients in {bad[:3]}")
    if any(p.dtype != torch.float32 for _, p in trainable):
        problems.append(f"{dtype}: trainable weights must stay fp32 (autocast handles the low precision)")
    with torch.no_grad(), autocast(device, dtype):
        shadow = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"], batch["size"])
    if shadow.shape != batch["shadow_map"].shape or not torch.isfinite(shadow).all():
        problems.append(f"{dtype}: one-step sample has shape {tuple(shadow.shape)} or non-finite values")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=BACKBONES, default="unet")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--pretrained_path", default=None)
    parser.add_argument("--tiny", action="store_true", help="sdxl: a tiny random SDXL-shaped model, no files")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="bf16")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.backbone == "sdxl" and args.tiny:
        from shadow.models.sdxl import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_from_configs
        model = build_from_configs(TINY_UNET_CONFIG, TINY_VAE_CONFIG)
    else:
        model = build_model(args.backbone, args.image_size, args.pretrained_path)
    model = model.to(device).train()
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    batch = dummy_batch(args.batch_size, args.image_size, device)
    dtypes = [torch.float32]
    chosen = parse_precision(args.mixed_precision)
    if chosen != torch.float32:
        if device.type == "cpu" and chosen == torch.float16:
            print("fp16 autocast is not run on CPU; checking bf16 instead.")
            chosen = torch.bfloat16
        dtypes.append(chosen)
    problems = []
    for dtype in dtypes:
        problems += check(model, batch, device, dtype)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
