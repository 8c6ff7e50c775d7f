"""Disparity metrics, computed over the valid pixels of each image and then averaged over images.

  epe       mean |pred - gt| (px)
  rmse      sqrt(mean (pred - gt)^2) (px)
  d1        % of pixels with error > 3 px   (the guide's "D1")
  d3        % of pixels with error > 1 px   (the guide's "D3"; elsewhere called bad-1)
  bad2      % of pixels with error > 2 px   (Middlebury's usual threshold)
  kitti_d1  % of pixels with error > 3 px AND > 5 % of the true disparity (the official KITTI rule)
"""
from __future__ import annotations

import torch

METRIC_NAMES = ("epe", "rmse", "d1", "d3", "bad2", "kitti_d1")


def per_image_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """pred, gt (B, [1,] H, W) px; valid (B, [1,] H, W) bool -> each metric as (B,) (NaN for an image with no
    valid pixel)."""
    pred, gt = pred.float().reshape(pred.shape[0], -1), gt.float().reshape(gt.shape[0], -1)
    valid = valid.bool().reshape(valid.shape[0], -1)
    count = valid.sum(dim=1).float()
    gt_safe = torch.where(valid, gt, torch.zeros_like(gt))  # keep inf/NaN GT out of the arithmetic
    error = torch.where(valid, (pred - gt_safe).abs(), torch.zeros_like(pred))

    def mean(values: torch.Tensor) -> torch.Tensor:
        return torch.where(count > 0, (values * valid).sum(dim=1) / count.clamp_min(1), torch.full_like(count, float("nan")))

    return {
        "epe": mean(error),
        "rmse": mean(error.square()).sqrt(),
        "d1": 100 * mean((error > 3).float()),
        "d3": 100 * mean((error > 1).float()),
        "bad2": 100 * mean((error > 2).float()),
        "kitti_d1": 100 * mean(((error > 3) & (error > 0.05 * gt_safe.abs())).float()),
    }


def disparity_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Metrics averaged over the images of the batch that have valid pixels (see module docstring)."""
    per_image = per_image_metrics(pred, gt, valid)
    return {name: float(values[~values.isnan()].mean()) if (~values.isnan()).any() else float("nan")
            for name, values in per_image.items()}


class MetricAverager:
    """Accumulates per-image metrics over a validation set; `result()` is the mean over images."""

    def __init__(self):
        self.sums = {name: 0.0 for name in METRIC_NAMES}
        self.images = 0

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
        per_image = per_image_metrics(pred, gt, valid)
        keep = ~per_image["epe"].isnan()
        for name in METRIC_NAMES:
            self.sums[name] += float(per_image[name][keep].sum())
        self.images += int(keep.sum())

    def result(self) -> dict[str, float]:
        return {name: total / self.images if self.images else float("nan") for name, total in self.sums.items()}
