"""Training losses. The config's `loss` section names terms {name: {function, weight, params}}; `build_loss`
turns it into one callable (outputs, batch) -> (total, {name: value}).

FoundationStereo's loss (paper, eq. 7; the default of every config here) is
    smooth_L1(d0↑, d̄) + Σ_{k=1..K} γ^(K-k) · |d_k - d̄|_1,   γ = 0.9,
with d0↑ the initial (soft-argmin) disparity bilinearly upsampled ×4 (values ×4, align_corners=True: the model's
`init_disparity`) and d_k the K GRU predictions; each term is a mean over the valid pixels (the batch's `valid`:
finite GT with 0 < d < data.max_disparity).

Functions (all over the valid pixels, disparity in full-resolution px):
  disparity_l1  L1 of the final prediction
  smooth_l1     smooth-L1 of one prediction (params.prediction: "init" (default) = the ×4-upsampled d0, or "final")
  sequence      Σ_k w_k · L1(pred_k) over the K GRU iterations. params.schedule "paper" (default):
                w_k = γ^(K-k) (FoundationStereo); "raft": w_k = γ_adj^(K-k), γ_adj = γ^(15/(K-1)), so the first
                prediction weighs γ^15 whatever K is (RAFT-Stereo/IGEV); K = 1 is plain L1 in both
  multi_scale   Σ_s weights[s] · loss_type(pred, gt) at 1/2^s resolution (disparity scaled with the image)
  gradient      edge-aware smoothness mean |∂d/d̄| · exp(-|∂I|) (Monodepth style), no GT needed
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FUNCTIONS = ("disparity_l1", "smooth_l1", "sequence", "multi_scale", "gradient")


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of values over valid pixels; 0 (with a gradient path) when nothing is valid."""
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def l1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return masked_mean((pred - gt).abs(), valid)


def smooth_l1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return masked_mean(F.smooth_l1_loss(pred, gt, reduction="none"), valid)


SCHEDULES = ("paper", "raft")


def sequence_loss(predictions: list[torch.Tensor], gt: torch.Tensor, valid: torch.Tensor,
                  gamma: float = 0.9, schedule: str = "paper") -> torch.Tensor:
    """γ-weighted L1 over the iterations, the last weighing 1 (weights listed in the module docstring)."""
    count = len(predictions)
    if count == 0:
        raise ValueError("sequence loss needs at least one prediction")
    if schedule not in SCHEDULES:
        raise ValueError(f"sequence loss schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "raft" and count > 1:
        gamma = gamma ** (15 / (count - 1))
    return sum(gamma ** (count - 1 - k) * l1(pred, gt, valid) for k, pred in enumerate(predictions))


def _downsample(disp: torch.Tensor, valid: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool disparity over its valid pixels, values ÷ scale; a coarse pixel is valid if any fine one is."""
    if scale == 1:
        return disp, valid
    weight = valid.to(disp.dtype)
    summed = F.avg_pool2d(torch.where(valid, disp, torch.zeros_like(disp)), scale, scale)
    coverage = F.avg_pool2d(weight, scale, scale)
    return summed / coverage.clamp_min(1e-6) / scale, coverage > 0


def multi_scale_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, weights=(1.0, 0.5, 0.25),
                     loss_type: str = "l1") -> torch.Tensor:
    if loss_type not in ("l1", "smooth_l1"):
        raise ValueError(f"multi_scale loss_type must be 'l1' or 'smooth_l1', got {loss_type!r}")
    term = l1 if loss_type == "l1" else smooth_l1
    total = pred.new_zeros(())
    for level, weight in enumerate(weights):
        scale = 2 ** level
        pred_s = pred if scale == 1 else F.avg_pool2d(pred, scale, scale) / scale
        gt_s, valid_s = _downsample(gt, valid, scale)
        total = total + weight * term(pred_s, gt_s, valid_s)
    return total


def gradient_loss(pred: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of (B, 1, H, W) disparity given (B, 3, H, W) image in [0, 1]."""
    disp = pred / pred.mean(dim=(2, 3), keepdim=True).clamp_min(1e-3)  # scale-free, as Monodepth
    dx = (disp[..., :, 1:] - disp[..., :, :-1]).abs()
    dy = (disp[..., 1:, :] - disp[..., :-1, :]).abs()
    wx = torch.exp(-(image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True))
    wy = torch.exp(-(image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True))
    return (dx * wx).mean() + (dy * wy).mean()


def build_loss(loss_cfg: dict):
    """{name: {function, weight, params}} -> fn(outputs, batch) -> (total, {name: term}); errors name the term."""
    terms = []
    for name, term in loss_cfg.items():
        unknown = sorted(set(term) - {"function", "weight", "params"})
        if unknown:
            raise ValueError(f"loss.{name}: unknown keys {unknown}; expected function, weight, params")
        if term.get("function") not in FUNCTIONS:
            raise ValueError(f"loss.{name}.function must be one of {FUNCTIONS}, got {term.get('function')!r}")
        params = dict(term.get("params") or {})
        if term["function"] == "sequence" and params.get("schedule", "paper") not in SCHEDULES:
            raise ValueError(f"loss.{name}.params.schedule must be one of {SCHEDULES}, got {params['schedule']!r}")
        terms.append((name, term["function"], float(term.get("weight", 1.0)), params))
    if not terms:
        raise ValueError("The loss section defines no terms.")

    def compute(outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        gt, valid = batch["disparity"], batch["valid"]
        values = {}
        for name, function, weight, params in terms:
            final = outputs["disparity"].float()
            if function == "disparity_l1":
                value = l1(final, gt, valid)
            elif function == "smooth_l1":
                which = params.get("prediction", "init")
                if which not in ("init", "final"):
                    raise ValueError(f"loss.{name}.params.prediction must be 'init' or 'final', got {which!r}")
                value = smooth_l1(outputs["init_disparity"].float() if which == "init" else final, gt, valid)
            elif function == "sequence":
                value = sequence_loss([p.float() for p in outputs.get("disparities", [final])], gt, valid,
                                      float(params.get("gamma", 0.9)), params.get("schedule", "paper"))
            elif function == "multi_scale":
                value = multi_scale_loss(final, gt, valid, tuple(params.get("weights", (1.0, 0.5, 0.25))),
                                         params.get("loss_type", "l1"))
            else:
                value = gradient_loss(final, batch["left"])
            values[name] = value
        total = sum(weight * values[name] for name, _, weight, _ in terms)
        return total, {name: value.detach() for name, value in values.items()}

    return compute
