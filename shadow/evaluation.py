"""Validation on a loader: flow losses and one-step samples scored against the targets; the baselines' scores."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader

from common import dist
from common.amp import autocast
from shadow.flow import flow_losses, sample
from shadow.metrics import METRICS, shadow_metrics

BATCH_KEYS = ("object_image", "mask", "shadow_map", "theta", "phi", "size")


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (batch[k].to(device, non_blocking=True) if k in BATCH_KEYS else batch[k]) for k in batch}


def _batches(loader: DataLoader, device: torch.device):
    for batch in loader:
        if batch is None or batch.get("empty"):
            continue
        yield to_device(batch, device)


def _mean_over_ranks(sums: dict[str, torch.Tensor], count: torch.Tensor) -> dict[str, float]:
    total = dist.all_reduce_sum_(torch.stack([count] + list(sums.values())))
    return {key: (total[i + 1] / total[0].clamp_min(1)).item() for i, key in enumerate(sums)}


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, precision: torch.dtype,
             steps: int = 1, seed: int = 1234) -> tuple[dict, dict | None]:
    """Metrics averaged over the loader (and over DDP ranks): "val/loss" (the flow loss at random t, as in
    training), "val/loss_t1" (at t = 1, the only point one-step sampling uses), "val/iou", "val/rmse", ...; and
    the first batch with its prediction for image grids."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device).manual_seed(seed)  # the same noise at every evaluation
    sums = {f"val/{m}": torch.zeros((), device=device) for m in ("loss", "loss_t1") + METRICS}
    count, first = torch.zeros((), device=device), None
    for batch in _batches(loader, device):
        size = batch["mask"].shape[0]
        with autocast(device, precision):
            sums["val/loss"] += flow_losses(model, batch, generator)[0].sum()
            sums["val/loss_t1"] += flow_losses(model, batch, generator, t=torch.ones(size, device=device))[0].sum()
            prediction = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"],
                                batch["size"], steps=steps, generator=generator)
        for name, values in shadow_metrics(prediction, batch["shadow_map"]).items():
            sums[f"val/{name}"] += values.sum()
        count += size
        if first is None:
            first = {**{k: batch[k].cpu() for k in BATCH_KEYS}, "prediction": prediction.cpu()}
    model.train(was_training)
    return _mean_over_ranks(sums, count), first


def score_baselines(loader: DataLoader, device: torch.device,
                    baselines: dict[str, Callable[[dict], torch.Tensor]]) -> dict:
    """"<name>/<metric>" for each baseline (a function batch -> (B, 1, H, W) prediction) over the loader, averaged
    over DDP ranks. The baselines do not change during training, so this runs once per run."""
    sums = {f"{name}/{m}": torch.zeros((), device=device) for name in baselines for m in METRICS}
    count = torch.zeros((), device=device)
    for batch in _batches(loader, device):
        for name, predict in baselines.items():
            for metric, values in shadow_metrics(predict(batch).to(device), batch["shadow_map"]).items():
                sums[f"{name}/{metric}"] += values.sum()
        count += batch["mask"].shape[0]
    return _mean_over_ranks(sums, count)
