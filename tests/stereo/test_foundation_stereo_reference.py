"""The model equals the reference (NVlabs/FoundationStereo): same weights in the reference's key names, loaded through
load_official, give the reference's disparities (fixture: tests/stereo/fixtures/foundation_stereo_vits/README.md);
and the paper-size builds have the reference's parameter counts (measured on the reference itself)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from common.checkpoint import CheckpointError
from stereo.core.foundation_stereo import FoundationStereo
from stereo.core.official import load_official
from stereo.core.upsample import InputPadder
from stereo import inference

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE = FIXTURES / "foundation_stereo_vits"
TOLERANCE_PX = 1e-3


def _weight_rule():
    spec = importlib.util.spec_from_file_location("weight_rule", FIXTURES / "weight_rule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference_outputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def reference_weights():
    manifest = json.loads((FIXTURE / "state_dict_manifest.json").read_text())
    return {"model": _weight_rule().deterministic_state_dict(manifest)}


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.mark.slow
def test_disparities_match_the_trained_reference_at_iters_1_and_4(reference, reference_weights):
    """attend_over="disparity": the released weights' semantics (flash_attn layout of the first release)."""
    model = load_official(reference_weights, reference["cfg"])
    expected = reference["outputs"]["disparity"]
    with torch.no_grad():
        out = model(reference["left"], reference["right"], iters=4)
        first = model(reference["left"], reference["right"], iters=1, test_mode=True)
    assert _max_error(out["init_disparity_quarter"], expected["init_disp"]) <= TOLERANCE_PX
    assert _max_error(out["disparities"][0], expected["disp_iter1"]) <= TOLERANCE_PX
    assert _max_error(out["disparities"][3], expected["disp_iter4"]) <= TOLERANCE_PX
    assert _max_error(first, expected["disp_iter1"]) <= TOLERANCE_PX
    # The two attention axes really differ, so the comparison above can tell them apart.
    assert _max_error(expected["disp_iter4"], reference["outputs"]["heads"]["disp_iter4"]) > 0.1


@pytest.mark.slow
def test_attention_over_heads_matches_the_reference_code_as_it_is_today(reference, reference_weights):
    model = load_official(reference_weights, reference["cfg"], overrides={"attend_over": "heads"})
    expected = reference["outputs"]["heads"]
    with torch.no_grad():
        out = model(reference["left"], reference["right"], iters=4)
    assert _max_error(out["init_disparity_quarter"], expected["init_disp"]) <= TOLERANCE_PX
    assert _max_error(out["disparities"][3], expected["disp_iter4"]) <= TOLERANCE_PX


def test_depth_anything_feature_matches_the_reference(reference, reference_weights):
    """The frozen branch alone (its effect on the disparity is diluted by everything after it)."""
    model = load_official(reference_weights, reference["cfg"])
    padder = InputPadder(reference["left"].shape, 32)
    (left,) = padder.pad_images(model.normalize(reference["left"]))
    with torch.no_grad():
        feature = model.feature.dino(left)
    assert _max_error(feature, reference["outputs"]["disparity"]["vit_feature"]) <= 1e-4


def test_state_dict_keys_and_shapes_are_the_references():
    manifest = json.loads((FIXTURE / "state_dict_manifest.json").read_text())
    with torch.device("meta"):
        model = FoundationStereo({"vit_size": "vits", "max_disp": 64})
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == {key: shape for key, shape, _ in manifest}


@pytest.mark.parametrize("vit_size, total, trainable", [
    ("vitl", 374_517_067, 39_201_418),  # measured on the reference (README); the paper-size model
    ("vitb", 135_478_283, 38_007_498),
    ("vits", 62_335_403, 37_550_314),
])
def test_paper_size_parameter_counts_equal_the_reference(vit_size, total, trainable):
    with torch.device("meta"):
        model = FoundationStereo({"vit_size": vit_size, "max_disp": 416})
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable


@pytest.mark.slow
def test_a_release_folder_in_the_reference_format_gives_the_reference_disparity(reference, reference_weights, tmp_path):
    """The released-checkpoint path end to end: the fixture's weights written as the reference writes a release
    (model_best_bp2.pth = {"model", "global_step", "epoch"} beside cfg.yaml with its run keys), read by the scripts'
    loader with the cfg.yaml found beside the checkpoint."""
    folder = tmp_path / "23-51-11"
    folder.mkdir()
    torch.save({**reference_weights, "global_step": 200000, "epoch": 12}, folder / "model_best_bp2.pth")
    cfg = {**reference["cfg"], "num_steps": 200000, "finetune_ckpt_name": "model_best_bp2.pth", "world_size": 8}
    (folder / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    model = inference.load_model(str(folder / "model_best_bp2.pth"), False, torch.device("cpu"), 1)
    with torch.no_grad():
        disparity = model(reference["left"], reference["right"], test_mode=True)
    assert _max_error(disparity, reference["outputs"]["disparity"]["disp_iter1"]) <= TOLERANCE_PX

    (folder / "cfg.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"needs its cfg.yaml: pass --cfg \(not found: .*23-51-11/cfg.yaml"):
        inference.load_model(str(folder / "model_best_bp2.pth"), False, torch.device("cpu"), 1)
    with pytest.raises(CheckpointError, match=r"not found: .*23-51-11/missing\.pth"):
        inference.load_model(str(folder / "missing.pth"), False, torch.device("cpu"), 1)
