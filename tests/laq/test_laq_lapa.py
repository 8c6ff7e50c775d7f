"""LAPA's released-weights path: a state_dict made by LAPA's own code (tests/laq/fixtures/README.md) loads through
load_lapa and reproduces LAPA's eval-mode reconstruction and code ids; the corrected model differs; the file
formats LAPA's trainer writes load; bad key sets are errors listing the keys; init_from and the labelling script."""
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from common import checkpoint
from laq.lapa import LapaCheckpointError, load_lapa, read_lapa_state_dict
from laq.models import LatentActionQuantization

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lapa_tiny.pt"
SCRIPT = Path(__file__).resolve().parents[2] / "laq" / "scripts" / "3_label_latent_actions.py"


@pytest.fixture(scope="module")
def lapa():
    return torch.load(FIXTURE, weights_only=True)


def test_lapa_weights_reproduce_lapa_outputs(lapa):
    model = load_lapa(lapa["state_dict"], **lapa["lapa_config"])
    assert model.cfg.lapa_compat and not model.training
    with torch.no_grad():
        out = model(lapa["first"], lapa["future"])
    assert out["recon"].shape == lapa["recon"].shape == (6, 3, 32, 32)
    assert (out["recon"] - lapa["recon"]).abs().max() < 1e-4
    assert torch.equal(out["indices"], lapa["indices"])
    assert len(lapa["indices"].unique()) >= 5  # the fixture exercises the argmin, not one code
    assert torch.allclose(model.decode_codes(lapa["first"], lapa["indices"]), lapa["recon"], atol=1e-4)


def test_corrected_model_differs_on_the_same_weights(lapa):
    """The flag is real: the same weights without LAPA's temporal-PEG reshape and token permutation give other
    outputs (each fix alone changes them)."""
    reference = load_lapa(lapa["state_dict"], **lapa["lapa_config"])
    for fix in ("peg", "tokens"):
        model = load_lapa(lapa["state_dict"], **lapa["lapa_config"])
        if fix == "peg":
            model._temporal_layout = "temporal"
        else:
            model.vq.lapa_compat = False
        with torch.no_grad():
            assert (model(lapa["first"], lapa["future"])["recon"] - lapa["recon"]).abs().max() > 1e-2, fix
    corrected = LatentActionQuantization(reference.cfg.__class__(**{**vars(reference.cfg), "lapa_compat": False}))
    corrected.load_state_dict(reference.state_dict())
    with torch.no_grad():
        assert (corrected.eval()(lapa["first"], lapa["future"])["recon"] - lapa["recon"]).abs().max() > 1e-2


def test_the_file_formats_lapa_writes_load(lapa, tmp_path):
    """results/vae.{steps}.pt (a state_dict; `module.` keys when saved from the DDP-wrapped model) and
    LAQTrainer.save's {"model", "optim", "steps"} package."""
    bare = tmp_path / "vae.5000.pt"
    torch.save({f"module.{k}": v for k, v in lapa["state_dict"].items()}, bare)
    package = tmp_path / "trainer.pt"
    torch.save({"model": lapa["state_dict"], "optim": {"state": {}, "param_groups": []}, "steps": 5000}, package)
    for path in (bare, package):
        with torch.no_grad():
            out = load_lapa(path, **lapa["lapa_config"])(lapa["first"], lapa["future"])
        assert torch.equal(out["indices"], lapa["indices"]), path.name


def test_unknown_missing_and_misshaped_keys_are_listed(lapa):
    state = dict(lapa["state_dict"])
    state["decoder.extra.weight"] = torch.zeros(1)
    del state["vq.codebooks"]
    with pytest.raises(LapaCheckpointError, match=r"unknown keys \['decoder.extra.weight'\].*missing keys "
                                                  r"\['vq.codebooks'\]"):
        load_lapa(state, **lapa["lapa_config"])
    with pytest.raises(LapaCheckpointError, match="shape mismatches.*constructor arguments"):
        load_lapa(lapa["state_dict"], **{**lapa["lapa_config"], "quant_dim": 16})
    with pytest.raises(TypeError, match="Unknown LAPA constructor argument"):
        load_lapa(lapa["state_dict"], depth=3)


def test_a_pickled_object_in_the_file_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"model": {}, "hook": Path("x")}, path)
    with pytest.raises(checkpoint.CheckpointError, match=str(path)):
        read_lapa_state_dict(path)


def test_label_script_with_lapa_checkpoint(lapa, tmp_path, monkeypatch):
    from laq.synth import write_dataset
    write_dataset(tmp_path / "frames", scenes=1, frames=4, image_size=32, square=6, step_px=1)
    ckpt = tmp_path / "laq_openx.pt"
    torch.save(lapa["state_dict"], ckpt)
    args = ["--lapa_checkpoint", str(ckpt), "--folders", str(tmp_path / "frames"), "--offset", "2", "--no_clamp",
            "--out", str(tmp_path / "l.jsonl"), "--lapa_kwargs"] + [f"{k}={v}" for k, v in lapa["lapa_config"].items()]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = [json.loads(line) for line in open(tmp_path / "l.jsonl")]
    assert len(rows) == 2 and all(len(r["codes"]) == 4 and 0 <= r["latent_action"] < 8 ** 4 for r in rows)
