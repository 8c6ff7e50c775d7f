"""The training objective: which loss terms apply to which sample (MoGe's `loss.<label_type>` groups), over the
loss functions of stereo.train.losses.

A sample's `label_type` (from its dataset entry) selects its group; a batch that mixes label types is split,
each group's loss is computed on its samples, and the total is their sample-weighted mean. A term's
`params.max_disparity` (the guide writes it for `disparity_l1`) restricts that term to GT below it, in px.
"""
from __future__ import annotations

from typing import Callable

import torch

from stereo.train.losses import build_loss


def take(value, index: torch.Tensor):
    """The samples `index` of a batch-first structure (tensors, lists/tuples/dicts of them; other values kept)."""
    if torch.is_tensor(value):
        return value[index] if value.dim() > 0 else value
    if isinstance(value, dict):
        return {key: take(item, index) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], str):  # per-sample names and label types
            return [value[i] for i in index.tolist()]
        return type(value)(take(item, index) for item in value)
    return value


def _term(name: str, term: dict) -> tuple[float | None, Callable]:
    params = dict(term["params"])
    max_disparity = params.pop("max_disparity", None)
    return (None if max_disparity is None else float(max_disparity),
            build_loss({name: {**term, "params": params}}))


def build_objective(loss_groups: dict) -> Callable[[dict, dict], tuple[torch.Tensor, dict]]:
    """{label_type: {term: {function, weight, params}}} -> fn(outputs, batch) -> (total, {term: value}).

    Term names are logged as they are with one group, as `label_type/term` with several."""
    groups = {label: {name: _term(name, term) for name, term in terms.items()} for label, terms in loss_groups.items()}
    prefix = len(groups) > 1

    def group_loss(label: str, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        total, values = 0.0, {}
        for name, (max_disparity, compute) in groups[label].items():
            term_batch = batch
            if max_disparity is not None:
                term_batch = {**batch, "valid": batch["valid"] & (batch["disparity"] < max_disparity)}
            term_total, term_values = compute(outputs, term_batch)
            total = total + term_total
            values.update({f"{label}/{key}" if prefix else key: value for key, value in term_values.items()})
        return total, values

    def compute(outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        labels = batch.get("label_type") or [next(iter(groups))] * batch["disparity"].shape[0]
        missing = sorted(set(labels) - set(groups))
        if missing:
            raise KeyError(f"No loss group for label_type {missing}; the config's loss groups are {sorted(groups)}")
        if len(set(labels)) == 1:
            return group_loss(labels[0], outputs, batch)
        total, values = 0.0, {}
        for label in sorted(set(labels)):
            index = torch.tensor([i for i, name in enumerate(labels) if name == label], device=batch["disparity"].device)
            label_total, label_values = group_loss(label, take(outputs, index), take(batch, index))
            total = total + label_total * (len(index) / len(labels))
            values.update(label_values)
        return total, values

    return compute
