"""Building the model from a config: pretrained parts from local files only (or an explicit "random"), and the
released checkpoint format (cfg.yaml keys, the {"model": ...} file, a "module." prefix)."""
from __future__ import annotations

import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

from stereo.core.depth_anything import DepthAnythingV2
from stereo.core.model import build_model
from stereo.core.model_config import model_config_from_official
from stereo.core.official import load_official, read_state_dict, save_official
from stereo.core.pretrained import PretrainedWeightsError

SMALL = {"vit_size": "vits", "max_disp": 32, "hidden_dims": [32, 32, 32], "train_iters": 2, "valid_iters": 2}
RANDOM = {"vit_weights": "random", "edgenext_weights": "random"}

# The cfg.yaml released with model_best_bp2.pth (23-51-11), as its users quote it.
RELEASED_CFG = """
corr_implementation: reg
corr_levels: 2
corr_radius: 4
finetune_ckpt_name: model_best_bp2.pth
finetune_from: null
hidden_dims: [128, 128, 128]
img_gamma: null
inference_tile: 0
low_memory: 0
max_disp: 416
max_val_sample: null
mixed_precision: true
n_downsample: 2
n_gru_layers: 3
notes: ''
num_steps: 200000
num_worker: 8
slow_fast_gru: false
tags_more: []
tile_min_overlap: [16, 16]
tile_wtype: gaussian
time_limit: 14400
train_iters: 22
val_interval: 1
valid_iters: 32
wdecay: 0
world_size: 32
"""


@pytest.mark.parametrize("key, file", [("vit_weights", "depth_anything_v2_vits.pth"),
                                       ("edgenext_weights", "edgenext_small")])
def test_a_pretrained_part_without_a_file_is_a_start_up_error(key, file):
    with pytest.raises(PretrainedWeightsError, match=rf"model\.{key} is not set.*{file}"):
        build_model({**SMALL, **RANDOM, key: None})


def test_the_test_size_vit_refuses_real_weights_and_is_smaller_than_vits(tmp_path):
    with pytest.raises(ValueError, match=r"model\.vit_weights must be 'random' with vit_size 'vitt'"):
        build_model({**SMALL, **RANDOM, "vit_size": "vitt", "vit_weights": str(tmp_path / "w.pth")})
    sizes = {size: sum(p.numel() for p in build_model({**SMALL, **RANDOM, "vit_size": size}).parameters())
             for size in ("vitt", "vits")}
    assert sizes["vitt"] < 0.6 * sizes["vits"], sizes


def test_a_missing_weights_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "depth_anything_v2_vits.pth"
    with pytest.raises(PretrainedWeightsError, match=str(missing)):
        build_model({**SMALL, **RANDOM, "vit_weights": str(missing)})


def test_depth_anything_and_edgenext_weights_load_from_local_files(tmp_path):
    torch.manual_seed(1)
    depth_anything = DepthAnythingV2("vits")
    torch.save(depth_anything.state_dict(), tmp_path / "depth_anything_v2_vits.pth")  # the released layout
    edgenext = timm.create_model("edgenext_small", pretrained=False)
    save_file(edgenext.state_dict(), tmp_path / "model.safetensors")  # timm's hub file (head included)
    model = build_model({**SMALL, "vit_weights": str(tmp_path / "depth_anything_v2_vits.pth"),
                         "edgenext_weights": str(tmp_path / "model.safetensors")})
    loaded = model.feature.dino.depth_anything.state_dict()
    for key, value in depth_anything.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert torch.equal(model.feature.stages[2].blocks[0].conv_dw.weight, edgenext.stages[2].blocks[0].conv_dw.weight)
    assert torch.equal(model.feature.stem[0].weight, edgenext.stem[0].weight)
    assert not any(p.requires_grad for p in model.feature.dino.parameters())


def test_a_weights_file_that_does_not_fit_is_an_error(tmp_path):
    state = DepthAnythingV2("vits").state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("pretrained.blocks.11.")}
    torch.save(state, tmp_path / "truncated.pth")
    with pytest.raises(PretrainedWeightsError, match=r"missing keys.*vit_size"):
        build_model({**SMALL, **RANDOM, "vit_weights": str(tmp_path / "truncated.pth")})


def test_the_released_cfg_yaml_gives_the_paper_model():
    cfg = model_config_from_official(yaml.safe_load(RELEASED_CFG))
    assert cfg["vit_size"] == "vitl"  # no vit_size key: ViT-L, as the reference's run_demo.py assumes
    assert (cfg["max_disp"], cfg["hidden_dims"], cfg["n_gru_layers"], cfg["corr_levels"], cfg["corr_radius"]) == \
        (416, [128, 128, 128], 3, 2, 4)
    assert cfg["mixed_precision"] is True and cfg["valid_iters"] == 32


def test_unknown_and_missing_cfg_keys_are_errors_naming_them():
    released = yaml.safe_load(RELEASED_CFG)
    with pytest.raises(ValueError, match="max_dispp"):
        model_config_from_official({**released, "max_dispp": 192})
    without = {k: v for k, v in released.items() if k not in ("corr_radius", "n_gru_layers")}
    with pytest.raises(ValueError, match=r"missing keys \['n_gru_layers', 'corr_radius'\]"):
        model_config_from_official(without)


def test_saved_in_the_reference_layout_loads_back_exactly(tmp_path):
    torch.manual_seed(0)
    model = build_model({**SMALL, **RANDOM}).eval()
    path = save_official(tmp_path, model, global_step=7, epoch=1)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "global_step", "epoch"} and raw["global_step"] == 7
    cfg = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    assert cfg["vit_size"] == "vits" and cfg["max_disp"] == 32 and cfg["corr_implementation"] == "reg"
    loaded = load_official(path, tmp_path / "cfg.yaml")
    assert not loaded.training
    state = loaded.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_a_module_prefix_is_removed_and_a_mismatch_names_the_keys(tmp_path):
    model = build_model({**SMALL, **RANDOM})
    prefixed = {"model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    assert set(read_state_dict(prefixed)) == set(model.state_dict())
    cfg = {**yaml.safe_load(RELEASED_CFG), "vit_size": "vits", "max_disp": 32, "hidden_dims": [32, 32, 32],
           "n_gru_layers": 2}
    with pytest.raises(ValueError, match=r"18 unexpected .*'update_block\.gru16"):
        load_official(prefixed, cfg)
