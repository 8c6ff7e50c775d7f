"""Shadow-map metrics per image on [0, 1] maps (B, 1, H, W) -> (B,), and the mean-shadow baseline.

soft IoU = Σ min(p, g) / Σ max(p, g)   (1 when both maps are empty)
RMSE     = sqrt(mean (p - g)^2)
S-RMSE   = RMSE(α* p, g) with α* = Σ p g / Σ p^2, the scale-invariant RMSE of Sun et al. 2019
ZNCC     = mean((p - μp)(g - μg)) / (σp σg), 0 when either map is constant
"""
from __future__ import annotations

import torch

EPS = 1e-8
METRICS = ("iou", "rmse", "srmse", "zncc")


def soft_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, g = pred.float().flatten(1), target.float().flatten(1)
    union = torch.maximum(p, g).sum(1)
    return torch.where(union > EPS, torch.minimum(p, g).sum(1) / union.clamp_min(EPS), torch.ones_like(union))


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).flatten(1).pow(2).mean(1).sqrt()


def scale_invariant_rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, g = pred.float().flatten(1), target.float().flatten(1)
    alpha = (p * g).sum(1, keepdim=True) / p.pow(2).sum(1, keepdim=True).clamp_min(EPS)
    return (alpha * p - g).pow(2).mean(1).sqrt()


def zncc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, g = pred.float().flatten(1), target.float().flatten(1)
    p, g = p - p.mean(1, keepdim=True), g - g.mean(1, keepdim=True)
    denom = p.pow(2).mean(1).sqrt() * g.pow(2).mean(1).sqrt()
    return torch.where(denom > EPS, (p * g).mean(1) / denom.clamp_min(EPS), torch.zeros_like(denom))


def shadow_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """All four metrics per image: {"iou", "rmse", "srmse", "zncc"} -> (B,) each."""
    return {"iou": soft_iou(pred, target), "rmse": rmse(pred, target),
            "srmse": scale_invariant_rmse(pred, target), "zncc": zncc(pred, target)}


class MeanShadow:
    """Running mean of the training shadow maps (1, H, W): the trivial baseline that ignores object and light."""

    def __init__(self):
        self.total, self.count = None, 0

    def update(self, shadow_maps: torch.Tensor) -> None:
        batch_sum = shadow_maps.detach().float().sum(0).cpu()
        self.total = batch_sum if self.total is None else self.total + batch_sum
        self.count += shadow_maps.shape[0]

    def value(self) -> torch.Tensor:
        if self.count == 0:
            raise ValueError("MeanShadow saw no samples.")
        return self.total / self.count
