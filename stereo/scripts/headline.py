"""The demo's headline rows (OUT/headline.json, the root README's table): the trained model's validation EPE beside
the best constant disparity's, and a real pair with ground truth, Middlebury 2014 "motorcycle" (shipped in the
scikit-image wheel, fetched by common.package_data), beside its own best constant disparity.

    python stereo/scripts/headline.py --run OUT/run --checkpoint OUT/run/checkpoint/00000150.pt --ema \
        --output OUT/headline.json [--real_scale 0.5]

The real pair is evaluated at --real_scale of its 741×500 size (disparity scaled with it), so that its 7-60 px
fit a small model's max_disp. The best constant is an oracle fitted on the very pixels it is scored on
(stereo.train.evaluation.BestConstant): the strongest trivial baseline.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from common.data import read_image
from common.package_data import middlebury_motorcycle
from stereo.inference import load_model, model_predictor
from stereo.train.evaluation import evaluate_dataset

METRIC = "epe"  # px, lower is better


def motorcycle_sample(scale: float, max_disparity: float) -> dict:
    """The Middlebury motorcycle pair as an evaluation sample: images (3, H, W) in [0, 1], disparity (1, H, W) px
    and its validity (finite and 0 < d < max_disparity), all at `scale` of the original size."""
    files = middlebury_motorcycle()
    left, right = read_image(files["left"]), read_image(files["right"])
    disparity = np.load(files["disparity"])["arr_0"].astype(np.float32)
    height, width = round(scale * disparity.shape[0]), round(scale * disparity.shape[1])
    resize = lambda image: cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    # Nearest-neighbour GT (no averaging across depth edges or into invalid pixels), scaled with the width.
    disparity = scale * cv2.resize(np.nan_to_num(disparity, nan=0, posinf=0, neginf=0), (width, height),
                                   interpolation=cv2.INTER_NEAREST)
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1).float() / 255
    gt = torch.from_numpy(disparity)[None]
    return {"left": to_tensor(resize(left)), "right": to_tensor(resize(right)), "disparity": gt,
            "valid": (gt > 0) & (gt < max_disparity)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the training run folder (its metrics.json)")
    parser.add_argument("--checkpoint", required=True, help="the model to run on the real pair")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights beside the checkpoint")
    parser.add_argument("--output", required=True, help="headline.json to write")
    parser.add_argument("--real_scale", type=float, default=0.5)
    parser.add_argument("--command", default="bash stereo/demo.sh OUT_DIR", help="recorded with every row")
    args = parser.parse_args(argv)
    run_metrics = json.loads((Path(args.run) / "metrics.json").read_text())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, args.ema, device, None)
    sample = motorcycle_sample(args.real_scale, model.cfg["max_disp"])
    real = evaluate_dataset(model_predictor(model, device), [sample], device)
    size = f"{sample['disparity'].shape[-1]}x{sample['disparity'].shape[-2]}"
    row = lambda kind, name, value: {"kind": kind, "name": name, "metric": f"val/{METRIC}", "value": float(value),
                                     "higher_is_better": False, "command": args.command}
    rows = [row("model", "FoundationStereo (tiny config, synthetic val)", run_metrics[f"val/{METRIC}"]),
            row("baseline", "best constant disparity (synthetic val, oracle)", run_metrics[f"val/best_constant_{METRIC}"]),
            row("real", f"FoundationStereo (tiny config) on Middlebury motorcycle {size}", real[METRIC]),
            row("real", f"best constant disparity on Middlebury motorcycle {size} (oracle)", real[f"best_constant_{METRIC}"])]
    Path(args.output).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    for entry in rows:
        print(f"{entry['kind']:<9} {entry['name']:<70} {entry['metric']} {entry['value']:.3f}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
