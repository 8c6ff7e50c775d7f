"""Released FoundationStereo checkpoints: `model_best_bp2.pth` (a dict {"model": state_dict, "global_step",
"epoch"}, loaded by the reference's run_demo.py with `load_state_dict(ckpt["model"])`, so its keys carry no
"module." prefix) next to a `cfg.yaml`. Also the writer of that layout, so a model trained here can be run by
the reference code.

    model = load_official("pretrained_models/23-51-11/model_best_bp2.pth", "pretrained_models/23-51-11/cfg.yaml")
    disparity = model(left_0_255, right_0_255, iters=32, test_mode=True)
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import yaml

from stereo.core.foundation_stereo import FoundationStereo
from stereo.core.model_config import model_config_from_official, official_config_from_model


def read_official_cfg(path: str | Path) -> dict:
    """cfg.yaml -> dict; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cfg file not found: {path} (the cfg.yaml released next to the checkpoint)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, found {type(data).__name__}")
    return data


def read_state_dict(checkpoint: str | Path | dict, where: str | None = None) -> dict:
    """A released checkpoint file (or its loaded dict, or a bare state dict) -> the model's state dict, with a
    "module." prefix (DDP-saved files) removed."""
    where = where or str(checkpoint if not isinstance(checkpoint, dict) else "the given state dict")
    if not isinstance(checkpoint, dict):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path}: torch.load(weights_only=True) refused it ({exc}); only tensors and plain "
                             "containers are accepted") from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{where} holds no state dict (expected {{'model': state_dict, ...}} or a state dict)")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def load_state_dict_strict(model: torch.nn.Module, state: dict, where: str) -> None:
    """load_state_dict(strict) with an error that names the file and the first differing keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{where} does not fit this model configuration: {len(missing)} missing keys (e.g. "
                         f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} with "
                         f"other shapes (e.g. {wrong[:3]}). Check vit_size, max_disp, n_gru_layers in the cfg.")
    model.load_state_dict(state)


def load_official(checkpoint: str | Path | dict, cfg: str | Path | dict, overrides: dict | None = None) -> FoundationStereo:
    """The reference's checkpoint (path, loaded dict or state dict) and its cfg.yaml (path or dict) -> the model,
    in eval mode, on the CPU. Unknown or missing cfg keys are errors naming them. `overrides` are model-config
    keys of this project (e.g. valid_iters, attend_over) applied on top."""
    where = str(cfg) if not isinstance(cfg, dict) else "cfg"
    official = read_official_cfg(cfg) if not isinstance(cfg, dict) else dict(cfg)
    model_cfg = {**model_config_from_official(official, where), **(overrides or {})}
    model = FoundationStereo(model_cfg)
    load_state_dict_strict(model, read_state_dict(checkpoint), str(checkpoint) if not isinstance(checkpoint, dict)
                           else "the given checkpoint")
    return model.eval()


def load_weights(model: FoundationStereo, checkpoint: str | Path) -> None:
    """Weights only (train.py --init_from): a released file or a checkpoint of this project, loaded strictly into
    an already built model. Frozen parts stay frozen (requires_grad is not part of a state dict)."""
    load_state_dict_strict(model, read_state_dict(checkpoint), str(checkpoint))


def save_official(folder: str | Path, model: FoundationStereo, global_step: int = 0, epoch: int = 0,
                  name: str = "model_best_bp2.pth") -> Path:
    """Write `folder/name` ({"model", "global_step", "epoch"}) and `folder/cfg.yaml` as the reference reads them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save({"model": model.state_dict(), "global_step": global_step, "epoch": epoch}, path)
    (folder / "cfg.yaml").write_text(yaml.safe_dump(official_config_from_model(model.cfg), sort_keys=True))
    return path
