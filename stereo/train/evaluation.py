"""Evaluation over a dataset of stereo pairs, strict by default, with the strongest trivial baselines beside it.

    metrics = evaluate_dataset(predict, EvalDataset(...), device)   # predict(left, right) -> disparity

Used by the training run's validation and by stereo/scripts/evaluate.py. A pair that cannot be read is an error
naming its file (or, with skip_bad=True, skipped and counted); a pair without a valid GT pixel is counted and
left out; an evaluation in which no pair counted raises EvaluationError, so a script exits non-zero instead of
reporting NaN.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.data import BadSampleError, SkippedSample
from common.viz import save_png
from stereo.train.dataloader import load_pair
from stereo.train.metrics import MetricAverager
from stereo.train.utils import visualise

log = logging.getLogger(__name__)
CONSTANT_BIN_PX = 0.01  # resolution of the best-constant search


class EvaluationError(RuntimeError):
    """Nothing could be evaluated (every pair unreadable or without valid ground truth)."""


class BestConstant:
    """The single disparity c that minimises the per-image-averaged EPE over the pairs seen (a weighted median:
    each image's valid pixels weigh 1/count), found on a CONSTANT_BIN_PX histogram. An oracle: it is fitted on
    the very pairs it is scored on, so it is the strongest constant baseline."""

    def __init__(self):
        self.weights = torch.zeros(0, dtype=torch.float64)
        self.images = 0

    def update(self, gt: torch.Tensor, valid: torch.Tensor) -> None:
        values = gt[valid].double().cpu()
        if values.numel() == 0:
            return
        bins = torch.round(values / CONSTANT_BIN_PX).long()
        counts = torch.bincount(bins, minlength=self.weights.numel()).double() / values.numel()
        self.weights = torch.nn.functional.pad(self.weights, (0, counts.numel() - self.weights.numel())) + counts
        self.images += 1

    def result(self) -> tuple[float, float]:
        """(c in px, its mean per-image EPE in px)."""
        if self.images == 0:
            return float("nan"), float("nan")
        centres = torch.arange(self.weights.numel(), dtype=torch.float64) * CONSTANT_BIN_PX
        median_bin = int(torch.searchsorted(self.weights.cumsum(0), self.weights.sum() / 2))
        constant = float(centres[median_bin])
        return constant, float((self.weights * (centres - constant).abs()).sum() / self.images)


@torch.no_grad()
def evaluate_dataset(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, dataset,
                     device: torch.device, *, constant: float | None = None, skip_bad: bool = False,
                     vis_dir: str | Path | None = None, max_vis: int = 0) -> dict:
    """Mean per-image metrics (stereo.train.metrics) of `predict`, or of predicting `constant` px everywhere.

    predict(left, right): (1, 3, H, W) RGB in [0, 1] on `device` -> (1, 1, H, W) disparity px (the caller puts
    the model in eval mode and picks the precision). Returns the metrics plus "pairs" (evaluated), "skipped"
    (unreadable, with skip_bad), "no_valid_gt", and "best_constant" / "best_constant_epe" (BestConstant)."""
    if (predict is None) == (constant is None):
        raise ValueError("evaluate_dataset needs exactly one of predict or constant")
    averager, best, skipped, no_valid_gt = MetricAverager(), BestConstant(), [], 0
    for index in range(len(dataset)):
        sample = dataset[index]
        if isinstance(sample, SkippedSample):
            if not skip_bad:
                raise BadSampleError(f"Evaluation pair {index} is unreadable: {sample.reason} ({sample.path}); "
                                     "fix or remove it, or evaluate with skip_bad (the count is reported)")
            skipped.append(sample.path)
            continue
        gt, valid = sample["disparity"][None].to(device), sample["valid"][None].to(device)
        if not bool(valid.any()):
            no_valid_gt += 1
            continue
        left, right = sample["left"][None].to(device), sample["right"][None].to(device)
        pred = torch.full_like(gt, float(constant)) if predict is None else predict(left, right).float()
        averager.update(pred, gt, valid)
        best.update(gt, valid)
        if vis_dir is not None and index < max_vis:
            save_png(Path(vis_dir) / f"{index:06d}.png", visualise(left, gt, valid, pred))
    if skipped:
        log.warning("%d of %d evaluation pairs skipped as unreadable: %s", len(skipped), len(dataset),
                    ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else ""))
    if no_valid_gt:
        log.warning("%d of %d evaluation pairs have no valid ground-truth pixel and were left out.", no_valid_gt,
                    len(dataset))
    if averager.images == 0:
        raise EvaluationError(f"No pair evaluated out of {len(dataset)}: {len(skipped)} unreadable, {no_valid_gt} "
                              "without valid ground truth")
    best_constant, best_constant_epe = best.result()
    return {**averager.result(), "pairs": averager.images, "skipped": len(skipped), "no_valid_gt": no_valid_gt,
            "best_constant": best_constant, "best_constant_epe": best_constant_epe}


def mean_disparity(dataset, max_pairs: int = 256) -> float:
    """Mean valid GT disparity (px) over up to max_pairs un-augmented pairs per source of a TrainingDataset: the
    constant that the train-mean baseline predicts (it sees no validation data)."""
    total, count = 0.0, 0
    for entry, pairs, _ in dataset.sources:
        for pair in pairs[:max_pairs]:
            try:
                disp = load_pair(pair, entry["format"])[2]
            except (BadSampleError, OSError, ValueError):
                continue  # the training loop already reports bad files
            valid = np.isfinite(disp) & (disp > 0) & (disp < dataset.max_disparity)
            total += float(disp[valid].sum())
            count += int(valid.sum())
    return total / max(count, 1)
