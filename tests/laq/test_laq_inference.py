"""The inference API and the labelling script on a checkpoint saved the way the training loop saves it."""
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from common import checkpoint
from laq.config_schema import compose_config
from laq.inference import codes_to_action_id, decode_codes, latent_actions, load_model, predict_next
from laq.models import build_model
from laq.synth import write_dataset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "laq" / "scripts" / "3_label_latent_actions.py"


@pytest.fixture()
def ckpt(tmp_path):
    cfg = compose_config(["experiment=laq_debug", "data.image_size=32", "model.patch_size=4", "model.dim=32",
                          "model.heads=2", "model.dim_head=16", "model.spatial_depth=1", "model.temporal_depth=1"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))  # fills the NSVQ buffers as training would
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": model.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True),
                           "step": 1})
    return path, model


def test_load_model_round_trip_and_api(ckpt):
    path, original = ckpt
    model = load_model(path)
    assert not model.training
    first, future = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    prediction = predict_next(model, first, future)
    original.eval()
    expected = original(first, future)
    assert torch.equal(prediction.codes, expected["indices"])
    assert torch.allclose(prediction.frame, expected["recon"], atol=1e-6)
    assert torch.equal(latent_actions(model, first, future), prediction.codes)
    assert torch.allclose(decode_codes(model, first, prediction.codes), prediction.frame, atol=1e-5)
    ids = codes_to_action_id(torch.tensor([[0, 0, 0, 1], [7, 7, 7, 7]]), 8)
    assert ids.tolist() == [1, 8**4 - 1]


def test_label_script_on_folders_and_jsonl(ckpt, tmp_path, monkeypatch):
    path, _ = ckpt
    write_dataset(tmp_path / "frames", scenes=2, frames=5, image_size=32, square=6, step_px=1)
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--ckpt", str(path), "--folders", str(tmp_path / "frames"),
                                      "--offset", "2", "--no_clamp", "--out", str(tmp_path / "a.jsonl")])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = [json.loads(line) for line in open(tmp_path / "a.jsonl")]
    assert len(rows) == 2 * 3 and all(len(r["codes"]) == 4 and r["delta"] == [str(c) for c in r["codes"]]
                                      for r in rows)
    assert all(0 <= r["latent_action"] < 8**4 and r["offset"] == 2 for r in rows)
    frames = sorted((tmp_path / "frames" / "scene_0000").iterdir())
    with open(tmp_path / "in.jsonl", "w") as handle:
        for frame in (frames[0], frames[4]):
            handle.write(json.dumps({"id": frame.stem, "image": str(frame), "instruction": "push"}) + "\n")
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--ckpt", str(path), "--jsonl", str(tmp_path / "in.jsonl"),
                                      "--offset", "3", "--out", str(tmp_path / "b.jsonl")])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = [json.loads(line) for line in open(tmp_path / "b.jsonl")]
    assert [r["instruction"] for r in rows] == ["push", "push"]
    assert rows[0]["future_image"].endswith("frame_0003.jpg") and not rows[0]["clamped"]
    assert rows[1]["clamped"] and rows[1]["future_image"].endswith("frame_0004.jpg")
