"""Hydra: groups and overrides reach the objects the code builds; unknown keys fail; --cfg job and --help work."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from laq.config_schema import compose_config
from laq.data.build import build_datasets
from laq.train_helpers import build_optimizer
from laq.models import build_model
from laq.synth import write_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "laq" / "scripts" / "2_train_laq.py"


def make_cfg(overrides):
    return compose_config(overrides)


def test_experiments_pick_their_groups():
    debug = make_cfg(["experiment=laq_debug"])
    assert debug.model.name == "laq_tiny" and debug.data.batch_size == 8 and debug.data.max_samples == 10
    assert debug.training.epochs == 5 and not debug.data.pair_level
    normal = make_cfg(["experiment=laq_normal"])
    assert normal.model.name == "laq_lapa" and normal.data.pair_level and normal.data.batch_size == 32
    assert normal.training.epochs == 50 and list(normal.data.offsets) == [30]
    scenes = make_cfg(["experiment=laq_normal", "data=laq_scenes"])  # the command line beats the experiment
    assert not scenes.data.pair_level and scenes.data.batch_size == 32
    full = make_cfg(["experiment=laq_full"])
    assert full.data.layout == "webdataset" and full.data.batch_size == 256 and full.training.epochs == 100


def test_overrides_reach_the_code(tmp_path):
    write_dataset(tmp_path / "d", scenes=10, frames=8, image_size=32, square=6, step_px=1, actions=2)
    cfg = make_cfg(["experiment=laq_debug", f"data.folder={tmp_path / 'd'}", "data.image_size=32",
                    "model.patch_size=4", "data.offsets=[2,5]", "data.max_samples=3", "data.val_split=0.2",
                    "data.pair_level=true", "training.optimizer.lr=5e-4", "training.optimizer.name=adamw",
                    "model.codebook_size=5"])
    data = build_datasets(cfg.data)
    assert data.train_size == 3 and data.val is not None and len(data.val.scenes) == 2
    assert data.val.offsets == [2, 5] and data.val[0]["first"].shape == (3, 32, 32)
    model = build_model(cfg.model)
    assert model.cfg.image_size == 32 and model.vq.codebooks.shape == (5, 32)
    optimizer = build_optimizer(model.parameters(), cfg.training.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 5e-4


def test_filters_and_strict_reach_the_code(tmp_path):
    write_dataset(tmp_path / "d", scenes=8, frames=6, image_size=32, square=6, step_px=1, actions=4)
    cfg = make_cfg(["experiment=laq_debug", f"data.folder={tmp_path / 'd'}", "data.image_size=32",
                    "+data.filters.label=[1,2]", "data.max_samples=null", "data.val_split=0"])
    data = build_datasets(cfg.data)
    assert sorted(s.meta["label"] for s in data.train.scenes) == ["1", "1", "2", "2"]


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        make_cfg(["experiment=laq_debug", "training.no_such_key=1"])


def test_missing_data_folder_names_it(tmp_path):
    cfg = make_cfg(["experiment=laq_debug", f"data.folder={tmp_path / 'absent'}"])
    with pytest.raises(FileNotFoundError, match="absent"):
        build_datasets(cfg.data)


def test_cfg_job_and_help_from_the_command_line():
    job = subprocess.run([sys.executable, str(SCRIPT), "experiment=laq_debug", "training.optimizer.lr=0.123",
                          "--cfg", "job"], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert "lr: 0.123" in job.stdout and "name: laq_tiny" in job.stdout
    helped = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "experiment: laq_debug, laq_full, laq_normal" in helped.stdout
