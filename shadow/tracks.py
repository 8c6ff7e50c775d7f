"""The paper's three evaluation tracks, grouped by object, and the scores that measure control of the light.

A track varies one light parameter for each of its objects: softness (size 2/4/8 at θ 30, φ 0), horizontal
direction (φ 0..340 step 20 at θ 35, size 2) and vertical direction (θ 5..45 step 5 at φ 0, size 2). A
`TrackGroup` is one object under all the values of its track, so two scores can compare its images:

- sensitivity = Σ_objects change(prediction) / Σ_objects change(target), where change(maps) is the mean absolute
  per-pixel difference between the maps of neighbouring parameter values (φ wraps around). 1 means the prediction
  moves as much as the rendered shadow when only that parameter changes; 0 means the parameter is ignored.
- light-swap accuracy: for every ordered pair (i, j) of one object's lights, is the prediction made with light j
  closer (RMSE) to the target of light j than the prediction made with the swapped light i? 0.5 for any predictor
  that ignores the light, 1 when the right light always wins.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch

from shadow.data import to_sample
from shadow.metrics import METRICS, rmse, shadow_metrics
from shadow.synth import render

log = logging.getLogger(__name__)
TRACKS = {
    "softness_control": [(30, 0, s) for s in (2, 4, 8)],
    "horizontal_direction_control": [(35, phi, 2) for phi in range(0, 360, 20)],
    "vertical_direction_control": [(theta, 0, 2) for theta in range(5, 50, 5)],
}
VARIED = {"softness_control": "size", "horizontal_direction_control": "phi", "vertical_direction_control": "theta"}
CIRCULAR = {"phi"}  # φ = 340 and φ = 0 are neighbours
OBJECTS_PER_TRACK = {"softness_control": 50, "horizontal_direction_control": 15, "vertical_direction_control": 15}
EVAL_OBJECT_SEED = 10_000_000  # far from the training generator's object seeds (0 .. N)


@dataclass
class TrackGroup:
    """One object of one track: `load()` returns its samples (dicts as shadow.data documents) sorted by the varied
    parameter; `controlled` is False when the samples do not form such a sweep (then only closeness is scored)."""
    track: str
    row: int
    load: Callable[[], list[dict]]
    controlled: bool = True


def _render_object(track: str, seed: int, row: int, image_size: int) -> list[dict]:
    samples = []
    for theta, phi, size in TRACKS[track]:
        out = render(theta, phi, size, image_size=image_size, seed=seed)
        light = {"theta": float(theta), "phi": float(phi), "size": float(size)}
        samples.append(to_sample(out["object_image"], out["mask"] / 255.0, out["shadow"], light, image_size,
                                 f"{track}_{row:03d}_{theta}_{phi}_{size}", track))
    return samples


def synthetic_groups(image_size: int, num_objects: int | None = None) -> list[TrackGroup]:
    """The three tracks rendered by `shadow.synth` on held-out objects (rendered when a group is loaded)."""
    groups = []
    for track_index, track in enumerate(TRACKS):
        for row in range(num_objects or OBJECTS_PER_TRACK[track]):
            seed = EVAL_OBJECT_SEED + 1000 * track_index + row
            groups.append(TrackGroup(track, row, partial(_render_object, track, seed, row, image_size)))
    return groups


def _is_sweep(samples: list[dict], varied: str) -> bool:
    """Every parameter but `varied` is the same, and `varied` takes a different value in each sample."""
    fixed = [k for k in ("theta", "phi", "size") if k != varied]
    values = [float(s[varied]) for s in samples]
    return len(set(values)) == len(values) and all(
        len({float(s[k]) for s in samples}) == 1 for k in fixed)


def benchmark_groups(dataset) -> list[TrackGroup]:
    """Groups of the benchmark tar: within a track the sorted keys are read as object-major (key n is object
    n // values) or, failing that, value-major (object n % objects); a track that fits neither is scored for
    closeness only, with a warning."""
    by_track: dict[str, list[int]] = defaultdict(list)
    lights = dataset.lights()
    for index, key in enumerate(dataset.keys):
        by_track[str(dataset.metadata[key].get("track", "unknown"))].append(index)
    groups = []
    for track, indices in by_track.items():
        light_of = lambda i: dict(zip(("theta", "phi", "size"), lights[i]))  # noqa: E731
        rows = None
        if track in VARIED and len(indices) % len(TRACKS[track]) == 0:
            n_values, n_objects = len(TRACKS[track]), len(indices) // len(TRACKS[track])
            for layout in ([indices[o * n_values:(o + 1) * n_values] for o in range(n_objects)],
                           [indices[o::n_objects] for o in range(n_objects)]):
                if all(_is_sweep([light_of(i) for i in row], VARIED[track]) for row in layout):
                    rows = layout
                    break
        if rows is None:
            log.warning("Benchmark track %s: its keys do not form one sweep of %s per object; scored for closeness "
                        "only (no sensitivity or light-swap test).", track, VARIED.get(track, "a parameter"))
            rows = [[i] for i in indices]
        for row_index, row in enumerate(rows):
            if rows and len(row) > 1:
                row = sorted(row, key=lambda i: light_of(i)[VARIED[track]])
            groups.append(TrackGroup(track, row_index, partial(lambda r: [dataset[i] for i in r], row),
                                     controlled=len(row) > 1))
    return groups


def light_change(maps: torch.Tensor, circular: bool) -> float:
    """Mean absolute per-pixel difference between neighbouring maps (n, 1, H, W) of one sweep."""
    following = torch.roll(maps, -1, 0) if circular else maps[1:]
    current = maps if circular else maps[:-1]
    return (following.float() - current.float()).abs().mean().item()


def swap_test(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """(correct, pairs) over ordered pairs i != j of one sweep (n, 1, H, W): the prediction made with the target's
    own light j is closer (RMSE) to target j than the prediction made with the swapped light i; a tie counts 1/2.

    The swapped prediction is compared with the same target (not one prediction with two targets): a soft target
    is the nearer of two for almost any prediction, so comparing against two targets rewards no softness control."""
    n = prediction.shape[0]
    error = torch.stack([rmse(prediction, target[j:j + 1].expand_as(prediction)) for j in range(n)])  # [j, i]
    own = error.diagonal()[:, None]
    off = ~torch.eye(n, dtype=torch.bool, device=error.device)
    correct = ((own < error).float() + 0.5 * (own == error).float())[off].sum().item()
    return correct, n * (n - 1)


class TrackScores:
    """Sums of one predictor's scores per track; `summary(prefix)` gives the flat metrics."""

    def __init__(self):
        self.sums = defaultdict(lambda: defaultdict(float))

    def add(self, group: TrackGroup, prediction: torch.Tensor, target: torch.Tensor) -> None:
        sums = self.sums[group.track]
        sums["count"] += prediction.shape[0]
        for name, values in shadow_metrics(prediction, target).items():
            sums[name] += values.sum().item()
        if group.controlled and group.track in VARIED:
            circular = VARIED[group.track] in CIRCULAR
            sums["change_prediction"] += light_change(prediction, circular)
            sums["change_target"] += light_change(target, circular)
            correct, pairs = swap_test(prediction, target)
            sums["swap_correct"], sums["swap_pairs"] = sums["swap_correct"] + correct, sums["swap_pairs"] + pairs

    def summary(self, prefix: str = "") -> dict:
        """{prefix}{track}/{iou, rmse, srmse, zncc, sensitivity, swap_accuracy}; the last two only for sweeps."""
        metrics = {}
        for track, sums in sorted(self.sums.items()):
            for name in METRICS:
                metrics[f"{prefix}{track}/{name}"] = sums[name] / sums["count"]
            if sums["change_target"] > 0:
                metrics[f"{prefix}{track}/sensitivity"] = sums["change_prediction"] / sums["change_target"]
            if sums["swap_pairs"] > 0:
                metrics[f"{prefix}{track}/swap_accuracy"] = sums["swap_correct"] / sums["swap_pairs"]
        return metrics


def collate(samples: list[dict]) -> dict:
    """Stack one group's samples into a batch (tensors stacked, strings listed)."""
    return {k: torch.stack([s[k] for s in samples]) if torch.is_tensor(samples[0][k]) else [s[k] for s in samples]
            for k in samples[0]}


def summarise(per_seed: list[dict], baselines: dict[str, dict]) -> dict:
    """Flat metrics from per-seed summaries of the model and the baselines' summaries:
    "<track>/<score>" (mean over seeds) and "<track>/<score>_std"; "<baseline>/<track>/<score>";
    "all/<metric>" and "<baseline>/all/<metric>" (mean of the track means); "sensitivity/<θ|φ|size>" and
    "swap_accuracy/<...>" (with "_std") from the track that varies that parameter (also for each baseline)."""
    metrics = {}
    for key in per_seed[0]:
        values = np.array([seed[key] for seed in per_seed])
        metrics[key], metrics[f"{key}_std"] = float(values.mean()), float(values.std())
    for name, scores in baselines.items():
        metrics.update({f"{name}/{key}": value for key, value in scores.items()})
    tracks = sorted({key.split("/")[0] for key in per_seed[0]})
    for prefix in [""] + [f"{name}/" for name in baselines]:
        for name in METRICS:
            values = [metrics[f"{prefix}{t}/{name}"] for t in tracks if f"{prefix}{t}/{name}" in metrics]
            if values:
                metrics[f"{prefix}all/{name}"] = float(np.mean(values))
        for track, parameter in VARIED.items():
            for score in ("sensitivity", "swap_accuracy"):
                for suffix in ("", "_std"):
                    if f"{prefix}{track}/{score}{suffix}" in metrics:
                        metrics[f"{prefix}{score}/{parameter}{suffix}"] = metrics[f"{prefix}{track}/{score}{suffix}"]
    return metrics
