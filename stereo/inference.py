"""A trained or released FoundationStereo from its file, and the predictor the evaluation takes. Used by
stereo/scripts/evaluate.py, demo.py and headline.py (as laq.inference is by LAQ's scripts).

    from stereo.inference import load_model, model_predictor
    model = load_model("WS/checkpoint/00010000.pt", ema=True, device=torch.device("cpu"), valid_iters=None)
    predict = model_predictor(model, torch.device("cpu"))     # [0, 1] images (B, 3, H, W) -> disparity px
"""
from __future__ import annotations

from pathlib import Path

import torch

from common import amp, checkpoint
from stereo.core.model import build_model
from stereo.core.official import load_official, load_state_dict_strict


def model_predictor(model, device: torch.device, precision: torch.dtype = torch.float32, iters: int | None = None):
    """predict(left, right) for evaluate_dataset: [0, 1] images -> disparity px, with the model taking 0-255 images
    as the reference does."""
    model.eval()

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        with amp.autocast(device, precision):
            return model(255 * left, 255 * right, iters=iters, test_mode=True)

    return predict


def load_model(path: str, ema: bool, device: torch.device, valid_iters: int | None, cfg: str | None = None):
    """A {step:08d}.pt of this project, or a released checkpoint (+ cfg.yaml) -> the model in eval mode on device."""
    state = checkpoint.load(path)
    overrides = {"valid_iters": valid_iters} if valid_iters is not None else {}
    if "model_config" not in state:  # not ours: a released FoundationStereo file
        cfg = Path(cfg) if cfg else Path(path).with_name("cfg.yaml")
        if ema:
            raise ValueError(f"--ema needs a checkpoint of this project; {path} has no model_config")
        if not cfg.is_file():
            raise FileNotFoundError(f"{path} has no model_config, so it is read as a released FoundationStereo "
                                    f"checkpoint, which needs its cfg.yaml: pass --cfg (not found: {cfg})")
        return load_official(state, cfg, overrides).to(device)
    if cfg:
        raise ValueError(f"--cfg is for released checkpoints; {path} carries its own model_config")
    if ema:
        ema_path = Path(path).with_name(Path(path).stem + "_ema.pt")
        if not ema_path.is_file():
            raise FileNotFoundError(f"--ema given but {ema_path} does not exist (was the run trained with "
                                    "--enable_ema false?)")
        state = {**checkpoint.load(ema_path), "model_config": state["model_config"]}
    model = build_model({**state["model_config"], **overrides}, load_pretrained=False)  # the file has every weight
    load_state_dict_strict(model, state["model"], str(path))
    return model.to(device).eval()
