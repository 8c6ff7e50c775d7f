"""Run a trained model on one stereo pair of any size and write the disparity as .npy, .pfm and a colourised PNG.

    python stereo/scripts/demo.py --left L.png --right R.png --checkpoint WS/checkpoint/00010000.pt --output OUT \
        [--ema] [--valid_iters 32]
    python stereo/scripts/demo.py --left L.png --right R.png --checkpoint pretrained_models/23-51-11/model_best_bp2.pth \
        [--cfg pretrained_models/23-51-11/cfg.yaml] --output OUT

Writes OUT/disparity.npy (float32 px, H×W of the input), OUT/disparity.pfm and OUT/disparity.png (turbo colours).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from common.data import read_image
from common.viz import colorize, save_png
from stereo.inference import load_model
from stereo.train.dataloader import write_pfm


@torch.no_grad()
def predict(model, left: np.ndarray, right: np.ndarray, device: torch.device) -> np.ndarray:
    """(H, W, 3) uint8 RGB pair -> (H, W) float32 disparity px (the model pads to ×32 and crops back)."""
    if left.shape != right.shape:
        raise ValueError(f"left and right images differ in size: {left.shape} vs {right.shape}")
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].float().to(device)  # 0-255, as the reference
    return model(to_tensor(left), to_tensor(right), test_mode=True)[0, 0].float().cpu().numpy()


def main(argv=None) -> np.ndarray:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--left", required=True)
    parser.add_argument("--right", required=True)
    parser.add_argument("--checkpoint", required=True, help="a {step:08d}.pt model file, or a released .pth")
    parser.add_argument("--cfg", default=None, help="cfg.yaml of a released checkpoint (default: beside it)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--ema", action="store_true", help="use the EMA weights beside the checkpoint")
    parser.add_argument("--valid_iters", type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, args.ema, device, args.valid_iters, args.cfg)
    disparity = predict(model, read_image(args.left), read_image(args.right), device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "disparity.npy", disparity)
    write_pfm(out / "disparity.pfm", disparity)
    save_png(out / "disparity.png", colorize(disparity, 0.0, max(float(disparity.max()), 1e-3)))
    print(f"disparity {disparity.shape[1]}x{disparity.shape[0]}: min {disparity.min():.2f} max {disparity.max():.2f} px"
          f" -> {out}/disparity.{{npy,pfm,png}}")
    return disparity


if __name__ == "__main__":
    main()
