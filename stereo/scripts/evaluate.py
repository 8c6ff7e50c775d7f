"""Evaluate a checkpoint on a dataset folder: prints the metrics table beside the best constant disparity,
writes metrics.json and colourised predictions (left | GT | prediction | error) as PNG.

    python stereo/scripts/evaluate.py --checkpoint WS/checkpoint/00010000.pt --data DIR --format folder \
        [--ema] [--valid_iters 32] [--skip_bad] --output OUT
    python stereo/scripts/evaluate.py --checkpoint pretrained_models/23-51-11/model_best_bp2.pth \
        --cfg pretrained_models/23-51-11/cfg.yaml --data DIR --format middlebury --output OUT

--checkpoint takes a {step:08d}.pt file of this project (the model config is read from it; with --ema the
{step:08d}_ema.pt beside it is used) or a released FoundationStereo checkpoint with its cfg.yaml (--cfg, default:
cfg.yaml beside the checkpoint, as the reference's run_demo.py). Strict by default: an unreadable pair is an
error naming its file; with --skip_bad it is skipped and counted; nothing evaluated is an error (exit 1).
Metrics: see stereo.train.metrics (per image, then averaged over images) and stereo.train.evaluation.
"""
from __future__ import annotations

import argparse
import os

import torch

from common.log import setup_logger, write_metrics
from stereo.inference import load_model, model_predictor
from stereo.train.dataloader import FORMATS, EvalDataset
from stereo.train.evaluation import EvaluationError, evaluate_dataset
from stereo.train.metrics import METRIC_NAMES


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
    parser.add_argument("--skip_bad", action="store_true", help="skip (and count) unreadable pairs instead of stopping")
    args = parser.parse_args(argv)
    logger = setup_logger(args.output, name="evaluate", filename="evaluate_log.txt", packages=("stereo",))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, args.ema, device, args.valid_iters, args.cfg)
    max_disparity = args.max_disparity or model.cfg["max_disp"]
    dataset = EvalDataset(args.data, args.format, max_disparity)  # evaluate_dataset applies --skip_bad
    os.makedirs(os.path.join(args.output, "vis"), exist_ok=True)
    metrics = evaluate_dataset(model_predictor(model, device), dataset, device, skip_bad=args.skip_bad,
                               vis_dir=os.path.join(args.output, "vis"), max_vis=args.num_vis)
    logger.info("%d of %d pairs from %s (%s; %d skipped, %d without valid GT), checkpoint %s%s", metrics["pairs"],
                len(dataset), args.data, args.format, metrics["skipped"], metrics["no_valid_gt"], args.checkpoint,
                " (EMA)" if args.ema else "")
    logger.info("%-10s %10s", "metric", "value")
    for name in METRIC_NAMES:
        logger.info("%-10s %10.4f", name, metrics[name])
    logger.info("best constant disparity %.2f px: epe %.4f", metrics["best_constant"], metrics["best_constant_epe"])
    write_metrics(args.output, {f"eval/{k}": v for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (EvaluationError, FileNotFoundError, ValueError, checkpoint.CheckpointError) as exc:
        raise SystemExit(f"evaluate.py: error: {exc}") from None
