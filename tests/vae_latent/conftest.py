"""Fixtures for the vae_latent tests: tiny frame folders in both on-disk layouts, and tiny configs."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml


def make_frames(root: Path, n_videos: int = 6, n_frames: int = 4, size: int = 24, layout: str = "frames") -> Path:
    """Write JPEG frames: a coloured square that moves over a per-video background (learnable structure).

    layout="frames": root/frames/<video_id>/img_XXXXX.jpg (numbered from 0);
    layout="scenes": root/scenes.csv + root/scene_XXX/frame_NNNN.jpg.
    """
    rng = np.random.default_rng(0)
    rows = []
    for v in range(n_videos):
        background = rng.integers(0, 255, size=3)
        square = rng.integers(0, 255, size=3)
        if layout == "frames":
            folder = root / "frames" / str(1000 + v)
        else:
            folder = root / f"scene_{v:03d}"
            rows.append({"scene_idx": v, "scene_folder": folder.name, "start_frame": 0, "end_frame": n_frames - 1,
                         "label": "synthetic"})
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(n_frames):
            image = np.empty((size, size, 3), np.uint8)
            image[:] = background
            left = (2 + 3 * t + v) % (size - 8)
            image[6:14, left:left + 8] = square
            name = f"img_{t:05d}.jpg" if layout == "frames" else f"frame_{t:04d}.jpg"
            cv2.imwrite(str(folder / name), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if layout == "scenes":
        with open(root / "scenes.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root


def tiny_config(tmp_path: Path, data_path: Path, name: str = "run", **sections) -> Path:
    """A config file for a 16x16 VAE with two encoder stages; `sections` update the defaults per section."""
    config = {
        "model_params": {"latent_dim": 4, "hidden_dims": [8, 16], "image_size": 16},
        "data_params": {"data_path": str(data_path), "train_batch_size": 4, "val_batch_size": 4, "num_workers": 0,
                        "val_fraction": 0.2},
        "exp_params": {"LR": 0.005, "kld_weight": 0.0001, "manual_seed": 3},
        "trainer_params": {"gpus": 0, "max_epochs": 2, "log_every_n_steps": 1},
        "logging_params": {"save_dir": str(tmp_path / "logs_vae"), "name": name, "save_every_n_steps": 1000,
                           "log_images_every_n_steps": 2},
    }
    for section, values in sections.items():
        config[section].update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def frames_data(tmp_path) -> Path:
    return make_frames(tmp_path / "sthv2")


@pytest.fixture
def scenes_data(tmp_path) -> Path:
    return make_frames(tmp_path / "laq_scenes", layout="scenes")


@pytest.fixture
def frames_factory(tmp_path):
    """frames_factory(name, **make_frames kwargs) -> a data folder under tmp_path."""
    return lambda name, **kwargs: make_frames(tmp_path / name, **kwargs)


@pytest.fixture
def config_for(tmp_path):
    """config_for(data_path, name=..., section={...}) -> path of a tiny config file."""
    return lambda data_path, **kwargs: tiny_config(tmp_path, data_path, **kwargs)
