"""Synthetic stereo pairs in the `folder` format with exact disparity (to the 0.001 px of depth_uint8).

    python -m stereo.synth --out DIR --num N [--height 96 --width 160 --max_disp 48 --seed 0]

Each scene is a slanted textured background plane plus 2-4 slanted textured foreground shapes (ellipses and
rectangles) at larger disparity. A surface's texture is attached to its left-image coordinates, so both views
show the same surface point with the same colour; each view keeps the nearest surface per pixel (z-buffer on
disparity), which produces real occlusions and disocclusions. Writes left/rgb, right/rgb, left/disparity and
right/disparity (PNG, depth_uint8 code), names 000000.png ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stereo.train.dataloader import depth_uint8_encoding


def random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: multi-scale smooth noise plus stripes, so matching is locally unambiguous."""
    texture = np.zeros((height, width, 3), np.float32)
    for cell in (2, 4, 8, 16):
        noise = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        texture += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width] / 4
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.2, 0.8)
    texture += 0.25 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None] * rng.random(3)
    texture = (texture - texture.min()) / (texture.max() - texture.min() + 1e-6)
    return (0.1 + 0.8 * texture * rng.uniform(0.5, 1.0, 3)).astype(np.float32)


def make_scene(rng: np.random.Generator, height: int, width: int, max_disp: float) -> dict:
    """Images (H, W, 3) float32 [0, 1] and disparities (H, W) float32 px of both views."""
    margin = int(max_disp) + 8
    layers = []
    # Background: a slanted plane with disparity between about 5 % and 35 % of max_disp.
    base = rng.uniform(0.05, 0.25) * max_disp
    layers.append({"plane": (base, rng.uniform(0, 0.1 * max_disp / width), rng.uniform(0, 0.1 * max_disp / height)),
                   "shape": None})
    for _ in range(rng.integers(2, 5)):
        near = rng.uniform(0.35, 0.9) * max_disp
        slope_x = rng.uniform(-0.08, 0.08) * max_disp / width
        slope_y = rng.uniform(-0.08, 0.08) * max_disp / height
        center = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
        radii = (rng.uniform(0.08, 0.3) * width, rng.uniform(0.12, 0.4) * height)
        layers.append({"plane": (near - slope_x * center[0] - slope_y * center[1], slope_x, slope_y),
                       "shape": ("ellipse" if rng.random() < 0.5 else "rect", center, radii)})
    for layer in layers:
        layer["texture"] = random_texture(rng, height, width + 2 * margin)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    views = {}
    for view in ("left", "right"):
        image = np.zeros((height, width, 3), np.float32)
        disp = np.full((height, width), -np.inf, np.float32)
        for layer in layers:
            a, b, c = layer["plane"]
            # A surface point at left column x_l appears in the right view at x_r = x_l - d(x_l, y); invert the
            # plane equation to find, for each right pixel, the left column it shows.
            x_left = xx if view == "left" else (xx + a + c * yy) / (1.0 - b)
            layer_disp = a + b * x_left + c * yy
            covered = np.ones_like(xx, bool)
            if layer["shape"] is not None:
                kind, (cx, cy), (rx, ry) = layer["shape"]
                u, v = (x_left - cx) / rx, (yy - cy) / ry
                covered = (u * u + v * v <= 1) if kind == "ellipse" else (np.abs(u) <= 1) & (np.abs(v) <= 1)
            nearer = covered & (layer_disp > disp)
            colour = cv2.remap(layer["texture"], (x_left + margin).astype(np.float32), yy, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
            image[nearer] = colour[nearer]
            disp[nearer] = layer_disp[nearer]
        views[view] = (image, disp)
    return {"left": views["left"][0], "right": views["right"][0], "disp_left": views["left"][1],
            "disp_right": views["right"][1]}


def write_dataset(out: str | Path, num: int, height: int = 96, width: int = 160, max_disp: float = 48.0,
                  seed: int = 0) -> Path:
    out = Path(out)
    for sub in ("left/rgb", "right/rgb", "left/disparity", "right/disparity"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(num):
        scene = make_scene(rng, height, width, max_disp)
        name = f"{index:06d}.png"
        for view in ("left", "right"):
            rgb = (np.clip(scene[view], 0, 1) * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(str(out / view / "rgb" / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            code = depth_uint8_encoding(np.clip(scene[f"disp_{view}"], 0, None))
            cv2.imwrite(str(out / view / "disparity" / name), cv2.cvtColor(code, cv2.COLOR_RGB2BGR))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--num", type=int, required=True, help="number of stereo pairs")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--max_disp", type=float, default=48.0, help="largest disparity in the scenes (px)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_dataset(args.out, args.num, args.height, args.width, args.max_disp, args.seed)
    print(f"wrote {args.num} pairs to {path}")


if __name__ == "__main__":
    main()
