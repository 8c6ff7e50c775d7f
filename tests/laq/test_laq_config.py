"""Hydra: groups and overrides reach the objects the code builds; the typed schema names wrong keys and types and
keeps strings as typed; value ranges are checked at start-up; --cfg job and --help work; warnings once; progress bar."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from common.optim import build_optimizer
from laq.config_schema import compose_config, validate
from laq.data.build import build_datasets
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
    opt = cfg.training.optimizer
    optimizer = build_optimizer(model, opt.name, opt.lr, opt.weight_decay, opt.betas)
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


def test_wrong_types_are_errors_naming_the_key():
    with pytest.raises(ConfigCompositionException) as error:
        make_cfg(["experiment=laq_debug", "data.batch_size=abc"])
    assert "data.batch_size" in str(error.value.__cause__) and "Integer" in str(error.value.__cause__)
    with pytest.raises(ConfigCompositionException) as error:
        make_cfg(["experiment=laq_debug", "data.pair_level=maybe"])
    assert "data.pair_level" in str(error.value.__cause__) and "valid bool" in str(error.value.__cause__)
    with pytest.raises(ConfigCompositionException) as error:
        make_cfg(["experiment=laq_debug", "model.dim=1.5"])
    assert "model.dim" in str(error.value.__cause__)


def test_string_keys_keep_the_text_as_typed():
    cfg = make_cfg(["experiment=laq_debug", "data.folder=2024.10", "experiment_name=007",
                    "trainer.resume_from_checkpoint=12", "model.init_from=1e3"])
    assert cfg.data.folder == "2024.10" and cfg.experiment_name == "007"
    assert cfg.trainer.resume_from_checkpoint == "12" and cfg.model.init_from == "1e3"
    assert make_cfg(["experiment=laq_debug", "data.folder=[a,b]"]).data.folder == ["a", "b"]  # a list of roots
    assert make_cfg(["experiment=laq_debug", "data.batch_size=3"]).data.batch_size == 3


def test_value_ranges_are_checked_at_start_up():
    for override, message in (("training.checkpoint_every_steps=0", "training.checkpoint_every_steps=0"),
                              ("training.checkpoint_every_epochs=-1", "training.checkpoint_every_epochs=-1"),
                              ("data.offsets=[0]", "data.offsets"), ("training.optimizer.name=sgd", "adamw"),
                              ("model.nsvq.threshold_mode=relative", "threshold_mode")):
        with pytest.raises(ValueError, match=re.escape(message)):
            validate(make_cfg(["experiment=laq_debug", override]))
    validate(make_cfg(["experiment=laq_debug"]))


def test_warnings_once_and_a_progress_bar(tmp_path):
    """A bad frame's warning appears once (not again with Hydra's [HYDRA] prefix); with PROGRESS=1 (or a terminal)
    rank 0 shows a tqdm bar with the rate and ETA."""
    write_dataset(tmp_path / "d", scenes=6, frames=4, image_size=32, square=6, step_px=1, actions=2)
    (tmp_path / "d" / "scene_0001" / "frame_0003.jpg").write_bytes(b"not a jpeg")  # the last frame: one pair
    result = subprocess.run([sys.executable, str(SCRIPT), "experiment=laq_debug", f"data.folder={tmp_path / 'd'}",
                             "data.image_size=32", "model.patch_size=4", "model.dim=32", "model.heads=2",
                             "model.dim_head=16", "model.spatial_depth=1", "model.temporal_depth=1",
                             "data.pair_level=true", "data.offsets=[1]", "data.max_samples=null", "data.batch_size=15",
                             "training.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}", "trainer.device=cpu"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PROGRESS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert output.count("Skipping bad sample") == 1 and "[HYDRA]" not in output
    assert re.search(r"laq laq_debug: 100%\|.*\| 1/1 \[", result.stderr)
