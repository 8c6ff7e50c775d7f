"""Check that a machine is ready to train: packages, device, config, data, one forward/backward, memory estimate.

    python vae_latent/test_setup.py [--config vae_latent/config_vae_sthv2.yaml] [--set data_params.data_path=/data]

Prints a ✓/✗ checklist and exits with status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

import torch

from common.config import ConfigError
from vae_latent.vae_config import load_config
from vae_latent.vanilla_vae_model import build_model, vae_loss

REQUIRED = ["torch", "numpy", "cv2", "yaml", "tensorboard", "torchmetrics", "tqdm"]


class Checklist:
    def __init__(self):
        self.failed = 0

    def report(self, ok: bool, what: str, detail: str = "") -> bool:
        self.failed += not ok
        print(f"{'✓' if ok else '✗'} {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def check_packages(checks: Checklist) -> None:
    missing, versions = [], []
    for name in REQUIRED:
        try:
            module = importlib.import_module(name)
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    detail = ", ".join(versions) if not missing else "missing " + ", ".join(missing) + \
        ": run `make setup` or `pip install -r requirements.txt`"
    checks.report(not missing, "packages", detail)


def check_device(checks: Checklist, gpus: int) -> torch.device:
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        ok = gpus <= count
        checks.report(ok, "device", f"{count} CUDA device(s): {names}" +
                      ("" if ok else f"; trainer_params.gpus={gpus} asks for more"))
        return torch.device("cpu") if gpus == 0 else torch.device("cuda", 0)
    ok = gpus <= 0
    checks.report(ok, "device", "no CUDA device: training runs on the CPU (slow at 256x256)" +
                  ("" if ok else f"; trainer_params.gpus={gpus} needs GPUs, set it to 0 or -1"))
    return torch.device("cpu")


def check_data(checks: Checklist, config: dict) -> torch.Tensor | None:
    """One training batch (B, 3, S, S) in [-1, 1], or None when the data cannot be read."""
    from torch.utils.data import DataLoader

    from common.data import collate_skipping
    from vae_latent.dataset_sthv2 import build_datasets

    data = config["data_params"]
    try:
        train_set, _, summary = build_datasets(data, config["model_params"]["image_size"],
                                               config["exp_params"]["manual_seed"])
    except (FileNotFoundError, ValueError, OSError) as exc:
        checks.report(False, "data path", f"{exc} (set it with --set data_params.data_path=DIR)")
        return None
    checks.report(True, "data path", f"{data['data_path']}: {summary}")
    start = time.perf_counter()
    batch = next(iter(DataLoader(train_set, batch_size=data["train_batch_size"], shuffle=True,
                                 collate_fn=collate_skipping)), None)
    if batch is None or "image" not in batch:
        checks.report(False, "batch", "the first batch had no readable frame")
        return None
    images = batch["image"]
    in_range = bool(images.min() >= -1 and images.max() <= 1)
    checks.report(in_range, "batch", f"{tuple(images.shape)} in [{images.min():.2f}, {images.max():.2f}] "
                  f"loaded in {time.perf_counter() - start:.2f} s, {len(batch.get('skipped', []))} skipped")
    return images


def check_model(checks: Checklist, config: dict, device: torch.device, images: torch.Tensor | None) -> None:
    model_params = config["model_params"]
    side, batch_size = model_params["image_size"], config["data_params"]["train_batch_size"]
    try:
        model = build_model(model_params).to(device)
    except (ValueError, RuntimeError) as exc:
        checks.report(False, "model", str(exc))
        return
    n_params = sum(p.numel() for p in model.parameters())
    source = "a real batch"
    if images is None:
        images, source = torch.rand(2, model_params["in_channels"], side, side) * 2 - 1, "random images"
    images = images[:2].to(device)
    activation_bytes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: activation_bytes.append(out.numel() * out.element_size()))
             for m in model.modules() if not list(m.children())]
    start = time.perf_counter()
    out = model(images)
    loss = vae_loss(out["recons"], images, out["mu"], out["log_var"], config["exp_params"]["kld_weight"])["loss"]
    loss.backward()
    seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    grads_ok = all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    checks.report(bool(torch.isfinite(loss)) and grads_ok, "forward/backward",
                  f"{n_params / 1e6:.2f}M parameters, loss {loss.item():.4f} on {source} "
                  f"({images.shape[0]} images, {seconds:.2f} s on {device})")
    # Weights, gradients and two Adam moments: 16 bytes per parameter; activations scale with the batch.
    per_image = sum(activation_bytes) / images.shape[0]
    estimate = 16 * n_params + per_image * batch_size
    detail = (f"~{estimate / 2**30:.2f} GiB per process at train_batch_size={batch_size} "
              f"({16 * n_params / 2**30:.2f} GiB weights+grads+Adam, "
              f"{per_image * batch_size / 2**30:.2f} GiB activations)")
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        checks.report(estimate < 0.9 * total, "memory estimate", detail + f" of {total / 2**30:.0f} GiB")
    else:
        checks.report(True, "memory estimate", detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the spec config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE")
    args = parser.parse_args(argv)
    checks = Checklist()
    check_packages(checks)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        checks.report(False, "config", str(exc))
        return 1
    checks.report(True, "config", args.config or "config_vae_sthv2.yaml (spec defaults)")
    device = check_device(checks, config["trainer_params"]["gpus"])
    images = check_data(checks, config)
    check_model(checks, config, device, images)
    print(f"\n{'All checks passed.' if not checks.failed else f'{checks.failed} check(s) failed.'}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
