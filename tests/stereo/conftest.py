"""Shared fixtures for the stereo tests: a small synthetic folder dataset and a tiny config that points at it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stereo.synth import write_dataset

TINY_CONFIG = Path(__file__).resolve().parents[2] / "stereo" / "configs" / "train" / "stereo_tiny.json"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread: two OpenMP threads per process spin against the other pytest worker on the 2-core
    machine and make FoundationStereo's small CPU runs several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stereo_synth")
    train = write_dataset(root / "train", 12, height=48, width=96, max_disp=24, seed=0)
    val = write_dataset(root / "val", 3, height=48, width=96, max_disp=24, seed=1)
    return train, val


def make_config(tmp_path: Path, train_dir: Path, val_dir: Path, name: str = "config.json", **overrides) -> Path:
    """The tiny config, pointed at the synthetic data, with 64×32 (W×H) crops and the test-size ViT (vitt: the
    frozen branch is present but a quarter of vits, so checkpoints are 40% smaller); overrides are merged per
    section."""
    config = json.loads(TINY_CONFIG.read_text())
    config["data"]["datasets"][0]["path"] = str(train_dir)
    config["data"]["val_datasets"][0]["path"] = str(val_dir)
    config["data"]["image_sizes"] = [[64, 32]]  # [W, H]
    config["model"].update({"vit_size": "vitt", "max_disp": 32, "train_iters": 2, "valid_iters": 2})
    config["data"]["max_disparity"] = 32
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path
