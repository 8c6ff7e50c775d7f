"""Evaluate a checkpoint on a dataset folder: prints the metrics table, writes metrics.json and colourised
predictions (left | GT | prediction | error) as PNG.

    python stereo/scripts/evaluate.py --checkpoint WS/checkpoint/00010000.pt --data DIR --format folder \
        [--ema] [--valid_iters 32] --output OUT
    python stereo/scripts/evaluate.py --checkpoint pretrained_models/23-51-11/model_best_bp2.pth \
        --cfg pretrained_models/23-51-11/cfg.yaml --data DIR --format middlebury --output OUT

--checkpoint takes a {step:08d}.pt file of this project (the model config is read from it; with --ema the
{step:08d}_ema.pt beside it is used) or a released FoundationStereo checkpoint with its cfg.yaml (--cfg, default:
cfg.yaml beside the checkpoint, as the reference's run_demo.py). Metrics: see stereo.train.metrics (per image, then
averaged over images).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from common import amp, checkpoint
from common.data import BadSampleError, SkippedSample
from common.log import setup_logger, write_metrics
from common.viz import save_png
from stereo.core.model import build_model
from stereo.core.official import load_official, load_state_dict_strict
from stereo.train.dataloader import FORMATS, EvalDataset, load_pair
from stereo.train.metrics import METRIC_NAMES, MetricAverager
from stereo.train.utils import visualise


@torch.no_grad()
def validate(model, dataset, device: torch.device, precision: torch.dtype = torch.float32, iters: int | None = None,
             constant: float | None = None, vis_dir: str | None = None, max_vis: int = 0) -> dict:
    """Mean per-image metrics of `model` (or of predicting `constant` px everywhere) over `dataset`."""
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    averager = MetricAverager()
    for index in range(len(dataset)):
        sample = dataset[index]
        if isinstance(sample, SkippedSample):
            continue
        left, right = sample["left"][None].to(device), sample["right"][None].to(device)
        gt, valid = sample["disparity"][None].to(device), sample["valid"][None].to(device)
        if constant is not None:
            pred = torch.full_like(gt, float(constant))
        else:
            with amp.autocast(device, precision):  # the model takes 0-255 images, as the reference
                pred = model(255 * left, 255 * right, iters=iters, test_mode=True).float()
        averager.update(pred, gt, valid)
        if vis_dir is not None and index < max_vis:
            save_png(Path(vis_dir) / f"{index:06d}.png", visualise(left, gt, valid, pred))
    if model is not None and was_training:
        model.train()
    return averager.result()


def mean_disparity(dataset, max_pairs: int = 256) -> float:
    """Mean valid GT disparity over (up to max_pairs per source) un-augmented pairs of a TrainingDataset: the
    constant that the trivial mean-disparity baseline predicts."""
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


def load_model(path: str, ema: bool, device: torch.device, valid_iters: int | None, cfg: str | None = None):
    """A {step:08d}.pt of this project, or a released checkpoint (+ cfg.yaml) -> the model in eval mode on device."""
    state = checkpoint.load(path)
    overrides = {"valid_iters": valid_iters} if valid_iters is not None else {}
    if "model_config" not in state:  # not ours: a released FoundationStereo file
        cfg = Path(cfg) if cfg else Path(path).with_name("cfg.yaml")
        if ema:
            raise ValueError(f"--ema needs a checkpoint of this project; {path} has no model_config")
        if not cfg.is_file():
            raise FileNotFoundError(f"{path} has no model_config, so it is read as a released FoundationStereo "
                                    f"checkpoint, which needs its cfg.yaml: pass --cfg (not found: {cfg})")
        return load_official(state, cfg, overrides).to(device)
    if cfg:
        raise ValueError(f"--cfg is for released checkpoints; {path} carries its own model_config")
    if ema:
        ema_path = Path(path).with_name(Path(path).stem + "_ema.pt")
        if not ema_path.is_file():
            raise FileNotFoundError(f"--ema given but {ema_path} does not exist (was the run trained with "
                                    "--enable_ema false?)")
        state = {**checkpoint.load(ema_path), "model_config": state["model_config"]}
    model = build_model({**state["model_config"], **overrides}, load_pretrained=False)  # the file has every weight
    load_state_dict_strict(model, state["model"], str(path))
    return model.to(device).eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a {step:08d}.pt model file, or a released .pth")
    parser.add_argument("--cfg", default=None, help="cfg.yaml of a released checkpoint (default: beside it)")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--format", default="folder", choices=FORMATS)
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--valid_iters", type=int, default=None, help="GRU iterations (default: the config's)")
    parser.add_argument("--output", required=True, help="folder for metrics.json and vis/")
    parser.add_argument("--max_disparity", type=float, default=None, help="valid GT limit (default: model max_disp)")
    parser.add_argument("--num_vis", type=int, default=16, help="colourised predictions to write")
    args = parser.parse_args(argv)
    logger = setup_logger(args.output, name="evaluate", filename="evaluate_log.txt", packages=("stereo",))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, args.ema, device, args.valid_iters, args.cfg)
    max_disparity = args.max_disparity or model.cfg["max_disp"]
    dataset = EvalDataset(args.data, args.format, max_disparity)
    os.makedirs(os.path.join(args.output, "vis"), exist_ok=True)
    metrics = validate(model, dataset, device, vis_dir=os.path.join(args.output, "vis"), max_vis=args.num_vis)
    logger.info("%d pairs from %s (%s), checkpoint %s%s", len(dataset), args.data, args.format, args.checkpoint,
                " (EMA)" if args.ema else "")
    logger.info("%-10s %10s", "metric", "value")
    for name in METRIC_NAMES:
        logger.info("%-10s %10.4f", name, metrics[name])
    write_metrics(args.output, {f"eval/{k}": v for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    main()
