"""Losses of STTran: cross-entropy for attention, multi-label margin (or BCE) for spatial and contacting on the
sigmoid outputs, and object cross-entropy over every box (the person included, as the reference) in SGCLS/SGDET."""
from __future__ import annotations

import torch
from torch import nn


def margin_targets(multi_hot: torch.Tensor) -> torch.Tensor:
    """(P, C) 0/1 -> (P, C) long for MultiLabelMarginLoss: positive class indices first, then -1."""
    classes = torch.arange(multi_hot.shape[1], device=multi_hot.device).expand_as(multi_hot)
    positive = multi_hot > 0.5
    # Sort so positives come first (stable), then blank the rest with -1.
    order = torch.argsort((~positive).to(torch.int8), dim=1, stable=True)
    targets = torch.gather(classes, 1, order)
    return torch.where(torch.gather(positive, 1, order), targets, torch.full_like(targets, -1))


def relation_losses(pred: dict, entry: dict, bce: bool = False) -> dict[str, torch.Tensor]:
    """Named losses (means over the pairs that have GT); their sum is the training loss."""
    has_gt = entry["has_gt"]
    losses = {"attention": nn.functional.cross_entropy(pred["attention_distribution"][has_gt],
                                                       entry["attention_gt"][has_gt])}
    for name in ("spatial", "contacting"):
        probs = pred[f"{name}_distribution"][has_gt]
        target = entry[f"{name}_gt"][has_gt]
        if bce:
            losses[name] = nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target)
        else:
            losses[name] = nn.functional.multilabel_margin_loss(probs, margin_targets(target))
    if "obj_logits" in pred:
        objects = entry["labels"] > 0  # SGDET: an unmatched detection (0) has no class
        losses["object"] = nn.functional.cross_entropy(pred["obj_logits"][objects], entry["labels"][objects])
    return losses
