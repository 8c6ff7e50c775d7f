"""Evaluate a checkpoint on the paper's three benchmark tracks.

    python shadow/evaluate.py --checkpoint run/best_model.pt --benchmark bench.tar --output eval --seeds 10
    python shadow/evaluate.py --checkpoint run/best_model.pt --synthetic --output eval --seeds 10

Tracks: softness (θ 30, φ 0, size 2/4/8), horizontal direction (θ 35, size 2, φ 0..340 step 20), vertical
direction (φ 0, size 2, θ 5..45 step 5); from the benchmark tar (its metadata's track names), or rendered by
`shadow.synth` for the same parameters on held-out objects. Each noise seed gives one prediction per image; a
track's metric is the mean over its images, reported as mean ± std over seeds. The mean-shadow baseline stored in
the checkpoint is scored on the same images. Writes metrics.json, results.md and one composite grid per track
(rows: target composite, predicted composite per object; columns: the track's varied parameter).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import checkpoint
from common.amp import autocast, parse_precision
from common.data import collate_skipping
from common.log import write_metrics
from common.viz import image_grid, save_png
from shadow.data import BenchmarkTarDataset, to_sample
from shadow.evaluation import to_device
from shadow.flow import sample
from shadow.metrics import METRICS, shadow_metrics
from shadow.models import build_model, load_trainable_state
from shadow.synth import render
from shadow.viz import composite

TRACKS = {
    "softness_control": [(30, 0, s) for s in (2, 4, 8)],
    "horizontal_direction_control": [(35, phi, 2) for phi in range(0, 360, 20)],
    "vertical_direction_control": [(theta, 0, 2) for theta in range(5, 50, 5)],
}
OBJECTS_PER_TRACK = {"softness_control": 50, "horizontal_direction_control": 15, "vertical_direction_control": 15}
EVAL_OBJECT_SEED = 10_000_000  # far from the training generator's object seeds (0 .. N)
GRID_OBJECTS = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="best_model.pt / latest_model.pt / checkpoint_N.pt")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--benchmark", help="local path of the benchmark webdataset tar")
    source.add_argument("--synthetic", action="store_true", help="render the tracks with shadow.synth")
    parser.add_argument("--output", required=True, help="folder for metrics.json, results.md and grids")
    parser.add_argument("--seeds", type=int, default=10, help="noise seeds per image")
    parser.add_argument("--steps", type=int, default=1, help="Euler steps (1 = the paper's one-step sampler)")
    parser.add_argument("--num_objects", type=int, default=None,
                        help="--synthetic: objects per track (default 50 / 15 / 15 as the benchmark)")
    parser.add_argument("--batch_size", type=int, default=16)
    return parser.parse_args(argv)


def synthetic_tracks(image_size: int, num_objects: int | None) -> list[dict]:
    """Samples (as shadow.data documents them) for the three tracks, rendered on held-out objects."""
    samples = []
    for track_index, (track, params) in enumerate(TRACKS.items()):
        count = num_objects or OBJECTS_PER_TRACK[track]
        for obj in range(count):
            seed = EVAL_OBJECT_SEED + 1000 * track_index + obj
            for theta, phi, size in params:
                out = render(theta, phi, size, image_size=image_size, seed=seed)
                light = {"theta": float(theta), "phi": float(phi), "size": float(size)}
                sample_ = to_sample(out["object_image"], out["mask"] / 255.0, out["shadow"], light, image_size,
                                    f"{track}_{obj:03d}_{theta}_{phi}_{size}", track)
                sample_["object_index"] = obj
                samples.append(sample_)
    return samples


def load_model(path: str, device: torch.device):
    """(model, training config, mean shadow map or None) from a checkpoint written by shadow/train.py."""
    state = checkpoint.load(path)
    config = state["config"]
    model = build_model(config["backbone"], config["image_size"], config.get("pretrained_path"))
    load_trainable_state(model, state["model"])
    return model.to(device).eval(), config, state.get("mean_shadow")


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config, mean_shadow = load_model(args.checkpoint, device)
    precision = parse_precision(config.get("mixed_precision", "no")) if device.type == "cuda" else torch.float32
    image_size = config["image_size"]
    if args.synthetic:
        dataset = synthetic_tracks(image_size, args.num_objects)
    else:
        dataset = BenchmarkTarDataset(args.benchmark, image_size, strict=True)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, collate_fn=collate_skipping)

    # per seed, per track: summed metric values and image counts
    per_seed = [defaultdict(lambda: defaultdict(float)) for _ in range(args.seeds)]
    baseline = defaultdict(lambda: defaultdict(float))
    grid_cells = defaultdict(dict)  # (track, object row) -> {param: (target composite, predicted composite)}
    for batch in loader:
        batch = to_device(batch, device)
        tracks = batch["track"]
        for seed in range(args.seeds):
            generator = torch.Generator(device).manual_seed(seed)
            with torch.no_grad(), autocast(device, precision):
                prediction = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"],
                                    batch["size"], steps=args.steps, generator=generator)
            scores = shadow_metrics(prediction, batch["shadow_map"])
            for i, track in enumerate(tracks):
                per_seed[seed][track]["count"] += 1
                for name in METRICS:
                    per_seed[seed][track][name] += scores[name][i].item()
            if seed == 0:
                _collect_grid_cells(grid_cells, batch, prediction)
        if mean_shadow is not None:
            scores = shadow_metrics(mean_shadow.to(device).expand_as(batch["shadow_map"]), batch["shadow_map"])
            for i, track in enumerate(tracks):
                baseline[track]["count"] += 1
                for name in METRICS:
                    baseline[track][name] += scores[name][i].item()

    metrics = summarise(per_seed, baseline)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_metrics(output, metrics)
    table = results_table(metrics, sorted(per_seed[0]))
    (output / "results.md").write_text(table + "\n")
    print(table)
    for track, image in grids(grid_cells).items():
        save_png(output / f"{track}.png", image)
    return metrics


def summarise(per_seed: list[dict], baseline: dict) -> dict:
    """Flat metrics: "<track>/<metric>" (mean over seeds), "<track>/<metric>_std", "baseline/<track>/<metric>",
    and "all/<metric>" (the mean of the three track means)."""
    metrics = {}
    tracks = sorted(per_seed[0])
    for track in tracks:
        for name in METRICS:
            values = np.array([seed[track][name] / seed[track]["count"] for seed in per_seed])
            metrics[f"{track}/{name}"] = float(values.mean())
            metrics[f"{track}/{name}_std"] = float(values.std())
            if track in baseline:
                metrics[f"baseline/{track}/{name}"] = baseline[track][name] / baseline[track]["count"]
    for name in METRICS:
        metrics[f"all/{name}"] = float(np.mean([metrics[f"{t}/{name}"] for t in tracks]))
        if baseline:
            metrics[f"baseline/all/{name}"] = float(np.mean([metrics[f"baseline/{t}/{name}"] for t in tracks]))
    return metrics


def results_table(metrics: dict, tracks: list[str]) -> str:
    lines = ["| track | IoU ↑ | RMSE ↓ | S-RMSE ↓ | ZNCC ↑ | baseline IoU | baseline RMSE |", "|---|---|---|---|---|---|---|"]
    for track in tracks:
        cells = [f"{metrics[f'{track}/{m}']:.3f} ± {metrics[f'{track}/{m}_std']:.3f}" for m in METRICS]
        base = [f"{metrics.get(f'baseline/{track}/{m}', float('nan')):.3f}" for m in ("iou", "rmse")]
        lines.append(f"| {track} | " + " | ".join(cells + base) + " |")
    return "\n".join(lines)


def _collect_grid_cells(cells: dict, batch: dict, prediction: torch.Tensor) -> None:
    """Keep composites of the first GRID_OBJECTS objects of each track (benchmark keys come in object order)."""
    for i, track in enumerate(batch["track"]):
        if "object_index" in batch:
            row = int(batch["object_index"][i])
        else:
            seen = cells.setdefault(("_seen", track), {"n": 0})
            row, seen["n"] = seen["n"] // len(TRACKS.get(track, [0])), seen["n"] + 1
        if row >= GRID_OBJECTS:
            continue
        param = (float(batch["theta"][i]), float(batch["phi"][i]), float(batch["size"][i]))
        cells[(track, row)][param] = (composite(batch["object_image"][i], batch["mask"][i], batch["shadow_map"][i]),
                                      composite(batch["object_image"][i], batch["mask"][i], prediction[i]))


def grids(cells: dict) -> dict:
    """track -> grid image: for each object a row of target composites and a row of predicted composites."""
    rows = defaultdict(list)
    for (track, _), by_param in sorted((k, v) for k, v in cells.items() if k[0] != "_seen"):
        ordered = [by_param[p] for p in sorted(by_param)]
        rows[track] += [[target for target, _ in ordered], [pred for _, pred in ordered]]
    return {track: image_grid(track_rows) for track, track_rows in rows.items()}


if __name__ == "__main__":
    main()
