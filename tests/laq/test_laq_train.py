"""The training loop on synthetic data: it learns (beats copying frame t, uses most codes, codes carry the action)
and a resumed run continues exactly."""
import json
from pathlib import Path

import torch

from common import checkpoint
from laq.config_schema import compose_config
from laq.inference import load_model, predict_next
from laq.synth import write_dataset
from laq.train import run

SMALL = ["experiment=laq_debug", "data.image_size=32", "model.patch_size=4", "model.dim=32", "model.heads=2",
         "model.dim_head=16", "model.spatial_depth=1", "model.temporal_depth=1", "data.num_workers=0",
         "logging.image_every=1000", "trainer.device=cpu"]


def make_cfg(overrides):
    return compose_config(SMALL + overrides)


def test_short_training_beats_copy_frame_and_uses_codes(tmp_path):
    # Four squares (one per code position's quadrant) move 6 px between the two frames of a pair in one of 4
    # directions: copying frame t is a clear baseline to beat, and the codes can only help if they carry it.
    write_dataset(tmp_path / "data", scenes=64, frames=4, image_size=32, square=6, step_px=2, actions=4, grid=2)
    cfg = make_cfg([f"data.folder={tmp_path / 'data'}", "data.offsets=[3]", "data.max_samples=null",
                    "data.batch_size=16", "data.val_split=0.25", "training.epochs=1000", "training.max_steps=150",
                    "training.optimizer.lr=3e-3", "training.val_every_steps=1000", "logging.log_every=40"])
    metrics = run(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val/psnr"] == metrics["val/psnr"]
    assert saved["val/psnr"] > saved["val/copy_psnr"] + 0.5
    assert saved["val/unique_codes"] >= 5  # of 8
    # action NMI is reported (labels exist) but not asserted: in 150 CPU steps the codes do not yet separate the
    # four directions reliably (see laq/README.md, "Known limits").
    assert 0.0 <= saved["val/action_nmi"] <= 1.0 and 0.0 <= saved["val/action_nmi_random"] <= 1.0
    for key in ("val/mse", "val/psnr", "val/copy_psnr", "val/unique_codes", "val/perplexity", "val/action_nmi"):
        assert key in saved
    model = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    first = torch.rand(2, 3, 32, 32)
    prediction = predict_next(model, first, first.flip(-1))
    assert prediction.frame.shape == (2, 3, 32, 32) and prediction.codes.shape == (2, 4)


def test_resume_continues_exactly(tmp_path):
    write_dataset(tmp_path / "data", scenes=12, frames=6, image_size=32, square=8, step_px=2, actions=3)
    # 12 scenes -> 10 train scenes, batch 4: 2 steps per epoch, so step 3 stops mid-epoch; codes are replaced
    # every 2 steps, so the codebook state (hits, recent inputs) must survive the checkpoint too.
    common_args = [f"data.folder={tmp_path / 'data'}", "data.offsets=[1,3]", "data.max_samples=null",
                   "data.batch_size=4", "data.val_split=0.2", "training.epochs=100", "training.deterministic=true",
                   "model.nsvq.replace_schedule=[[2,100]]", "training.val_every_steps=1000"]
    run(make_cfg(common_args + ["training.max_steps=6"]), tmp_path / "straight")
    run(make_cfg(common_args + ["training.max_steps=3"]), tmp_path / "resumed")
    assert checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 3
    run(make_cfg(common_args + ["training.max_steps=6", "trainer.resume_from_checkpoint=latest"]),
        tmp_path / "resumed")
    straight = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert straight["step"] == resumed["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), f"{key} differs after resume"
    assert straight["epoch"] == resumed["epoch"] and straight["batches_done"] == resumed["batches_done"]


def test_compile_flag_trains_the_compiled_module(tmp_path, monkeypatch):
    """training.compile=true hands the model to torch.compile and the training steps call what it returns (a
    recording stand-in here: compiling for real takes minutes on 2 cores)."""
    calls = []

    def fake_compile(module):
        def compiled(*inputs):
            calls.append(len(inputs))
            return module(*inputs)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    write_dataset(tmp_path / "data", scenes=8, frames=4, image_size=32, square=8, step_px=2, actions=2)
    common_args = [f"data.folder={tmp_path / 'data'}", "data.offsets=[1]", "data.max_samples=null",
                   "data.batch_size=4", "data.val_split=0.25", "training.max_steps=3", "training.val_every_steps=1000"]
    run(make_cfg(common_args), tmp_path / "eager")
    assert calls == []
    run(make_cfg(common_args + ["training.compile=true"]), tmp_path / "compiled")
    assert calls == [2, 2, 2]  # one compiled call (first, future) per training step


def test_start_up_checks_keep_runs_apart(tmp_path):
    """A fresh run refuses a folder holding an earlier run's checkpoints; a resume refuses a changed learning rate
    (naming the key and the flag) unless trainer.allow_config_change=true; a stale temp file of a killed save is
    removed at start-up."""
    import pytest
    write_dataset(tmp_path / "data", scenes=12, frames=4, image_size=32, square=8, step_px=2, actions=3)
    args = [f"data.folder={tmp_path / 'data'}", "data.offsets=[1]", "data.max_samples=null", "data.batch_size=4",
            "data.val_split=0.2", "training.epochs=100", "training.max_steps=2", "training.val_every_steps=1000"]
    run(make_cfg(args), tmp_path / "run")
    with pytest.raises(checkpoint.RunFolderInUse, match="already holds.*last.pt"):
        run(make_cfg(args), tmp_path / "run")
    stale = tmp_path / "run" / "checkpoints" / ".step_0000003.pt.1a2b3c4d.tmp"
    stale.write_bytes(b"half a checkpoint")
    resume = args + ["trainer.resume_from_checkpoint=latest"]
    with pytest.raises(checkpoint.ConfigChangeError,
                       match=r"training\.optimizer\.lr: 0\.0001 -> 0\.01.*trainer\.allow_config_change=true"):
        run(make_cfg(resume + ["training.optimizer.lr=1e-2"]), tmp_path / "run")
    assert not stale.exists()
    run(make_cfg(resume + ["training.optimizer.lr=1e-2", "trainer.allow_config_change=true",
                           "training.max_steps=3"]), tmp_path / "run")
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
