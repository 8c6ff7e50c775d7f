"""Evaluate a checkpoint on the paper's three tracks: closeness (IoU, RMSE, S-RMSE, ZNCC) and control of the light
(sensitivity and light-swap test per parameter), each beside the mean-shadow and the per-light baselines.

    python shadow/evaluate.py --checkpoint run/best_model.pt --benchmark bench.tar --output eval --seeds 10
    python shadow/evaluate.py --checkpoint run/best_model.pt --synthetic --output eval --seeds 10

Tracks (see shadow/tracks.py): softness (θ 30, φ 0, size 2/4/8), horizontal direction (θ 35, size 2, φ 0..340
step 20), vertical direction (φ 0, size 2, θ 5..45 step 5); from the benchmark tar, or rendered by `shadow.synth`
on held-out objects. Each noise seed gives one prediction per image, all lights of one object starting from the
same noise (so the light alone changes the prediction); a track's score is the mean over its images, reported as
mean ± std over seeds. The baselines: the mean shadow map stored in the checkpoint ("baseline/...") and the mean
of the training samples with the nearest light ("baseline_light/...", read from the training data named in the
checkpoint or --train_data). Writes metrics.json, results.md and one composite grid per track (rows: target
composite, predicted composite per object; columns: the track's varied parameter).
"""
from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path

import torch

from common import checkpoint
from common.amp import autocast, parse_precision
from common.log import write_metrics
from common.viz import image_grid, save_png
from shadow.baselines import NEAREST_LIGHTS, PerLightBaseline
from shadow.data import BenchmarkTarDataset, build_datasets
from shadow.evaluation import to_device
from shadow.flow import sample
from shadow.metrics import METRICS
from shadow.models import build_model, load_trainable_state
from shadow.tracks import TrackScores, benchmark_groups, collate, summarise, synthetic_groups
from shadow.viz import composite

log = logging.getLogger("shadow.evaluate")
GRID_OBJECTS = 3
BASELINES = {"baseline": "mean shadow", "baseline_light": "per-light mean"}


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
    parser.add_argument("--train_data", default=None,
                        help="training data for the per-light baseline (default: the checkpoint's --data_dir)")
    parser.add_argument("--no_per_light_baseline", action="store_true",
                        help="skip the per-light baseline (when the training data is not at hand)")
    args = parser.parse_args(argv)
    for name in ("seeds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_objects is not None and args.num_objects < 1:
        parser.error(f"--num_objects must be >= 1, got {args.num_objects}")
    return args


def load_model(path: str, device: torch.device):
    """(model, training config, mean shadow map or None) from a checkpoint written by shadow/train.py."""
    state = checkpoint.load(path)
    config = state["config"]
    model = build_model(config["backbone"], config["image_size"], config.get("pretrained_path"))
    load_trainable_state(model, state["model"])
    return model.to(device).eval(), config, state.get("mean_shadow")


def per_light_baseline(args, config: dict) -> PerLightBaseline:
    """The per-light baseline over the training split of the checkpoint's data (or --train_data)."""
    data_dir = args.train_data or config["data_dir"]
    if not Path(data_dir).exists():
        raise SystemExit(f"The per-light baseline needs the training data, but {data_dir} does not exist: pass "
                         f"--train_data PATH, or --no_per_light_baseline to report the mean shadow only.")
    train_set, _ = build_datasets(config.get("dataset_type", "custom"), data_dir, config["image_size"])
    return PerLightBaseline(train_set, NEAREST_LIGHTS)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config, mean_shadow = load_model(args.checkpoint, device)
    precision = parse_precision(config.get("mixed_precision", "no")) if device.type == "cuda" else torch.float32
    image_size = config["image_size"]
    if args.synthetic:
        groups = synthetic_groups(image_size, args.num_objects)
    else:
        groups = benchmark_groups(BenchmarkTarDataset(args.benchmark, image_size, strict=True))
    baselines = {}
    if mean_shadow is not None:
        baselines["baseline"] = lambda batch: mean_shadow.to(device).expand_as(batch["shadow_map"])
    if not args.no_per_light_baseline:
        by_light = per_light_baseline(args, config)
        baselines["baseline_light"] = lambda batch: by_light(batch["theta"], batch["phi"], batch["size"])

    per_seed = [TrackScores() for _ in range(args.seeds)]
    baseline_scores = {name: TrackScores() for name in baselines}
    grid_rows = defaultdict(list)  # track -> rows of composites (target row, predicted row per object)
    for number, group in enumerate(groups):
        batch = to_device(collate(group.load()), device)
        for seed in range(args.seeds):
            generator = torch.Generator(device).manual_seed(seed * 1_000_003 + number)
            with torch.no_grad(), autocast(device, precision):
                prediction = sample(model, batch["mask"], batch["object_image"], batch["theta"], batch["phi"],
                                    batch["size"], steps=args.steps, generator=generator, shared_noise=True)
            per_seed[seed].add(group, prediction, batch["shadow_map"])
            if seed == 0 and group.controlled and group.row < GRID_OBJECTS:
                grid_rows[group.track] += composite_rows(batch, prediction)
        for name, predict in baselines.items():
            baseline_scores[name].add(group, predict(batch), batch["shadow_map"])

    metrics = summarise([scores.summary() for scores in per_seed],
                        {name: scores.summary() for name, scores in baseline_scores.items()})
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_metrics(output, metrics)
    table = results_table(metrics, sorted(per_seed[0].sums), list(baselines))
    (output / "results.md").write_text(table + "\n")
    print(table)
    for track, rows in grid_rows.items():
        save_png(output / f"{track}.png", image_grid(rows))
    return metrics


def composite_rows(batch: dict, prediction: torch.Tensor) -> list[list]:
    """[targets, predictions]: the composites of one object's images in the order of the varied parameter."""
    pairs = [(composite(batch["object_image"][i], batch["mask"][i], batch["shadow_map"][i]),
              composite(batch["object_image"][i], batch["mask"][i], prediction[i])) for i in range(len(prediction))]
    return [[target for target, _ in pairs], [pred for _, pred in pairs]]


def results_table(metrics: dict, tracks: list[str], baselines: list[str]) -> str:
    """One row per track for the model (mean ± std over seeds) and one for each baseline."""
    scores = list(METRICS) + ["sensitivity", "swap_accuracy"]
    lines = ["| track | predictor | IoU ↑ | RMSE ↓ | S-RMSE ↓ | ZNCC ↑ | sensitivity (→ 1) | light swap ↑ |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(key: str, with_std: bool) -> str:
        if key not in metrics:
            return "–"
        return f"{metrics[key]:.3f} ± {metrics[key + '_std']:.3f}" if with_std else f"{metrics[key]:.3f}"

    for track in tracks + ["all"]:
        lines.append(f"| {track} | model | " + " | ".join(cell(f"{track}/{s}", track != "all") for s in scores) + " |")
        for name in baselines:
            lines.append(f"| {track} | {BASELINES[name]} | " +
                         " | ".join(cell(f"{name}/{track}/{s}", False) for s in scores) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
