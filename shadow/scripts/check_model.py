"""Forward/backward check of the shadow generator (the guide's `python test_dtype_fixes.py`): builds the model, runs
dummy inputs through the training loss in fp32 and under the chosen autocast dtype, and checks that every
trainable parameter receives a non-zero, finite gradient. Exits non-zero on any failure.

    python shadow/scripts/check_model.py --backbone unet --image_size 64
    python shadow/scripts/check_model.py --backbone sdxl --pretrained_path /models/sdxl --mixed_precision bf16
    python shadow/scripts/check_model.py --backbone sdxl --tiny        # a tiny random SDXL-shaped model

A gradient that exists but is zero everywhere teaches nothing, so only non-zero gradients count. At
initialisation most are zero by design: the output conv, the residual branches (and SDXL's new light MLP) start at
zero, so no gradient passes below them until they have moved. The check therefore reports the count at
initialisation, takes a few AdamW steps on the dummy batch, and requires every parameter to have a non-zero
gradient after them; a parameter cut off from the loss (a stray detach, an unused layer) never gets one.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch

from common.amp import autocast, parse_precision
from shadow.flow import sample, training_loss
from shadow.models import BACKBONES, build_model

RULE = "=" * 70


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


def gradient_counts(model: torch.nn.Module, batch: dict, device: torch.device,
                    dtype: torch.dtype) -> tuple[float, list[str], list[str]]:
    """One forward + backward: (loss, names of trainable parameters with a non-zero gradient, names whose gradient
    is not finite)."""
    model.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = training_loss(model, batch, torch.Generator(device).manual_seed(0))
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    nonzero = [n for n, p in trainable if p.grad is not None and bool(p.grad.abs().max() > 0)]
    bad = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    return loss.item(), nonzero, bad


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def check_forward(model: torch.nn.Module, batch: dict, device: torch.device, dtype: torch.dtype) -> list[str]:
    """The loss under `dtype` autocast is finite, and a one-step sample has the target's shape and finite values."""
    with torch.no_grad(), autocast(device, dtype):
        loss = training_loss(model, batch, torch.Generator(device).manual_seed(0))
        shadow = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"], batch["size"])
    print(f"   [{dtype_name(dtype)}] loss={loss.item():.4f}, one-step sample {tuple(shadow.shape)} {shadow.dtype} "
          f"in [{shadow.min():.2f}, {shadow.max():.2f}]")
    problems = [] if torch.isfinite(loss) else [f"{dtype_name(dtype)}: loss is {loss.item()}"]
    if shadow.shape != batch["shadow_map"].shape or not torch.isfinite(shadow).all():
        problems.append(f"{dtype_name(dtype)}: one-step sample has shape {tuple(shadow.shape)} or non-finite values")
    return problems


def check_backward(model: torch.nn.Module, batch: dict, device: torch.device, dtype: torch.dtype,
                   warmup_steps: int) -> list[str]:
    """Every trainable parameter has a finite, non-zero gradient after `warmup_steps` AdamW steps (on a copy)."""
    name = dtype_name(dtype)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    _, nonzero, _ = gradient_counts(model, batch, device, dtype)
    print(f"   [{name}] at initialisation: {len(nonzero)}/{len(trainable)} parameters have non-zero gradients "
          f"(zero-initialised layers pass none further down yet)")
    trained = copy.deepcopy(model)  # the warm-up steps change a copy; the model under test stays as built
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(warmup_steps):
        gradient_counts(trained, batch, device, dtype)
        optimizer.step()
    _, nonzero, bad = gradient_counts(trained, batch, device, dtype)
    print(f"   [{name}] after {warmup_steps} AdamW steps: Parameters with gradients: {len(nonzero)}/{len(trainable)}")
    problems = []
    missing = [n for n in trainable if n not in set(nonzero)]
    if missing:
        problems.append(f"{name}: {len(missing)} parameters get no non-zero gradient, e.g. {missing[:3]}")
    if bad:
        problems.append(f"{name}: non-finite gradients in {bad[:3]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=BACKBONES, default="unet")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--pretrained_path", default=None)
    parser.add_argument("--tiny", action="store_true", help="sdxl: a tiny random SDXL-shaped model, no files")
    parser.add_argument("--mixed_precision", nargs="?", const="bf16", choices=["no", "fp16", "bf16"], default="bf16")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--warmup_steps", type=int, default=3, help="AdamW steps before the final gradient count")
    args = parser.parse_args(argv)

    print(RULE + "\nTESTING DTYPE FIXES\n" + RULE + "\n")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("1. Creating model...")
    if args.backbone == "sdxl" and args.tiny:
        from shadow.models.sdxl import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_from_configs
        model = build_from_configs(TINY_UNET_CONFIG, TINY_VAE_CONFIG)
    else:
        model = build_model(args.backbone, args.image_size, args.pretrained_path)
    model = model.to(device).train()
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"   ✓ Model created ({args.backbone}, {sum(p.numel() for p in trainable):,} trainable parameters in "
          f"{len(trainable)} tensors, on {device})\n")

    print("2. Creating dummy inputs...")
    batch = dummy_batch(args.batch_size, args.image_size, device)
    print(f"   ✓ batch of {args.batch_size} at {args.image_size}x{args.image_size}\n")

    print("3. Checking weight dtypes...")
    problems = [] if all(p.dtype == torch.float32 for p in trainable) else [
        "trainable weights must stay fp32 (autocast handles the low precision)"]
    print("   ✓ trainable weights are fp32\n" if not problems else "   ✗ some trainable weights are not fp32\n")

    chosen = parse_precision(args.mixed_precision)
    if device.type == "cpu" and chosen == torch.float16:
        print("   (fp16 autocast is not run on CPU; checking bf16 instead)\n")
        chosen = torch.bfloat16
    dtypes = [torch.float32] + ([chosen] if chosen != torch.float32 else [])
    print("4. Forward pass in fp32...")
    problems += check_forward(model, batch, device, torch.float32)
    print(f"\n5. Forward pass under {dtype_name(chosen)} autocast...")
    problems += check_forward(model, batch, device, chosen) if chosen != torch.float32 else []
    print("\n6. Checking the frozen parts...")
    frozen = [p for p in model.parameters() if not p.requires_grad]
    if any(p.dtype != torch.float32 for p in frozen):
        problems.append("frozen weights (the VAE) must stay fp32")
    print(f"   ✓ {len(frozen)} frozen tensors, all fp32\n" if frozen else "   ✓ nothing is frozen (pixel UNet)\n")

    print("7. Testing backward pass...")
    for dtype in dtypes:
        problems += check_backward(model, batch, device, dtype, args.warmup_steps)
    if problems:
        for problem in problems:
            print(f"   ✗ {problem}")
        print(f"\n{RULE}\n{len(problems)} DTYPE CHECK(S) FAILED\n{RULE}")
        return 1
    print(f"   ✓ Backward pass works\n\n{RULE}\nALL DTYPE TESTS PASSED! ✅\n{RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
