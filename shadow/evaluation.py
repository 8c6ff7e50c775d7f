"""Validation on a loader: flow loss, one-step samples scored against the targets, and the mean-shadow baseline."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from common import dist
from common.amp import autocast
from shadow.flow import sample, training_loss
from shadow.metrics import METRICS, shadow_metrics

BATCH_KEYS = ("object_image", "mask", "shadow_map", "theta", "phi", "size")


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (batch[k].to(device, non_blocking=True) if k in BATCH_KEYS else batch[k]) for k in batch}


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, precision: torch.dtype,
             mean_shadow: torch.Tensor | None = None, steps: int = 1, seed: int = 1234) -> tuple[dict, dict | None]:
    """Metrics averaged over the loader (and over DDP ranks): {"val/loss", "val/iou", ...}, with
    "baseline/iou", ... for the mean shadow map; and the first batch with its prediction for image grids."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device).manual_seed(seed)  # the same noise at every evaluation
    sums = {f"val/{m}": torch.zeros((), device=device) for m in ("loss",) + METRICS}
    if mean_shadow is not None:
        sums.update({f"baseline/{m}": torch.zeros((), device=device) for m in METRICS})
    count, first = torch.zeros((), device=device), None
    for batch in loader:
        if batch is None or batch.get("empty"):
            continue
        batch = to_device(batch, device)
        with autocast(device, precision):
            sums["val/loss"] += training_loss(model, batch, generator) * batch["mask"].shape[0]
            prediction = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"],
                                batch["size"], steps=steps, generator=generator)
        for name, values in shadow_metrics(prediction, batch["shadow_map"]).items():
            sums[f"val/{name}"] += values.sum()
        if mean_shadow is not None:
            baseline = mean_shadow.to(device).expand_as(batch["shadow_map"])
            for name, values in shadow_metrics(baseline, batch["shadow_map"]).items():
                sums[f"baseline/{name}"] += values.sum()
        count += batch["mask"].shape[0]
        if first is None:
            first = {**{k: batch[k].cpu() for k in BATCH_KEYS}, "prediction": prediction.cpu()}
    model.train(was_training)
    total = dist.all_reduce_sum_(torch.stack([count] + list(sums.values())))
    metrics = {key: (total[i + 1] / total[0].clamp_min(1)).item() for i, key in enumerate(sums)}
    return metrics, first
