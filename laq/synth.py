"""Synthetic frames in the real scene layout, designed so latent actions are learnable and checkable.

    python -m laq.synth --out DIR --scenes N [--frames 16] [--image_size 64] [--actions 4] [--seed 0]

Writes DIR/scenes.csv (scene_idx, scene_folder, start_frame, end_frame, label, label_name, max_trans) and
DIR/scene_XXXX/frame_NNNN.jpg. Each scene is a smooth random background (a few low-frequency waves) with flat
coloured squares, one per cell of a `--grid` x `--grid` layout, that all move by the same one of K actions every
frame (right, left, down, up, then diagonals): `label` is the true action, so `val/action_nmi` measures whether
the learned codes mean something (with --grid 2 every one of LAQ's 2x2 code positions sees the action), and
copying frame t is a fair baseline the model must beat (the squares move `step_px` pixels per frame).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

ACTIONS = [("right", 1, 0), ("left", -1, 0), ("down", 0, 1), ("up", 0, -1),
           ("down_right", 1, 1), ("up_left", -1, -1), ("down_left", -1, 1), ("up_right", 1, -1)]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: a base colour plus three random low-frequency waves per channel."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.float32)
    for c in range(3):
        value = np.full((size, size), rng.uniform(0.3, 0.7), np.float32)
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 2.0, size=2)
            value += 0.08 * np.sin(2 * np.pi * (fy * ys + fx * xs) + rng.uniform(0, 2 * np.pi))
        image[..., c] = value
    return np.clip(image, 0, 1)


def make_scene(rng: np.random.Generator, size: int, frames: int, action: int, step_px: int,
               square: int, grid: int = 1) -> list[np.ndarray]:
    """Frames (H, W, 3) uint8 RGB of one scene: each square (one per grid cell, staying inside its cell) moves by
    ACTIONS[action] * step_px each frame."""
    _, dx, dy = ACTIONS[action]
    travel = step_px * (frames - 1)
    cell, margin = size // grid, 1

    def start(direction: int, cell_start: int) -> int:
        low = cell_start + margin + (travel if direction < 0 else 0)
        high = cell_start + cell - square - margin - (travel if direction > 0 else 0)
        if high < low:
            raise ValueError(f"--frames {frames} with --step_px {step_px} and --square {square} moves a square out "
                             f"of its {cell}px cell; use fewer frames, smaller steps or a smaller --grid")
        return int(rng.integers(low, high + 1))

    squares = []
    for row in range(grid):
        for col in range(grid):
            colour = rng.uniform(0, 1, size=3).astype(np.float32)
            colour[rng.integers(3)] = rng.choice([0.0, 1.0])  # saturated, so it stands out from the background
            squares.append((start(dx, col * cell), start(dy, row * cell), colour))
    base = background(rng, size)
    out = []
    for t in range(frames):
        image = base.copy()
        for x0, y0, colour in squares:
            x, y = x0 + dx * step_px * t, y0 + dy * step_px * t
            image[y:y + square, x:x + square] = colour
        out.append((image * 255 + 0.5).astype(np.uint8))
    return out


def write_dataset(out: str | Path, scenes: int, frames: int = 16, image_size: int = 64, actions: int = 4,
                  step_px: int = 2, square: int = 12, seed: int = 0, grid: int = 1) -> Path:
    """Write the scene layout under `out`; returns the path of scenes.csv."""
    if not 1 <= actions <= len(ACTIONS):
        raise ValueError(f"--actions must be in [1, {len(ACTIONS)}], got {actions}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(scenes):
        action = index % actions  # balanced labels
        folder = f"scene_{index:04d}"
        (out / folder).mkdir(exist_ok=True)
        for t, frame in enumerate(make_scene(rng, image_size, frames, action, step_px, square, grid)):
            cv2.imwrite(str(out / folder / f"frame_{t:04d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append({"scene_idx": index, "scene_folder": folder, "start_frame": 0, "end_frame": frames - 1,
                     "label": action, "label_name": ACTIONS[action][0], "max_trans": step_px})
    csv_path = out / "scenes.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (scene layout)")
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16, help="frames per scene")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--actions", type=int, default=4, help="number of distinct actions K (labels 0..K-1)")
    parser.add_argument("--step_px", type=int, default=2, help="pixels the square moves per frame")
    parser.add_argument("--square", type=int, default=12, help="side of the moving square in pixels")
    parser.add_argument("--grid", type=int, default=1, help="one square per cell of a grid x grid layout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = write_dataset(args.out, args.scenes, args.frames, args.image_size, args.actions, args.step_px,
                         args.square, args.seed, args.grid)
    print(f"Wrote {args.scenes} scenes x {args.frames} frames to {path.parent} ({path.name} holds the labels)")


if __name__ == "__main__":
    main()
