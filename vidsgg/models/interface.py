"""What the training loop, the memory pass and test.py ask of every relation model, with no-op defaults.

A model overrides only what it has: TEMPURA its memory hooks, SceneLLM its parameter groups and per-epoch
freezing, STKET / SceneLLM / EASG their losses. The loop calls these unconditionally (no `hasattr` probes).
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from vidsgg.models.losses import relation_losses


class RelationModel(nn.Module):
    """Base class of the relation models. Subclasses set `self.config` (a dataclass) and implement forward."""

    has_memory = False  # True when `memory_accumulators` / `accumulate_memory` / `set_memory` do something

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """Named losses of one video (their sum is the training loss): STTran's by default."""
        return relation_losses(pred, entry, bce)

    def parameter_groups(self, lr: float) -> list[dict]:
        """AdamW parameter groups: every trainable parameter at `lr` by default."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def start_epoch(self, epoch: int) -> None:
        """Called before each training epoch (0-based), e.g. to unfreeze parts on a schedule."""

    def memory_accumulators(self) -> dict:
        """Zeroed per-memory accumulators for one pass over the training set (none by default)."""
        return {}

    def accumulate_memory(self, pred: dict, entry: dict, accumulators: dict) -> None:
        """Add one training video's embeddings to the accumulators."""

    def set_memory(self, accumulators: dict) -> None:
        """Turn the (all-reduced) accumulators into the model's memory."""

    def set_test_flags(self, **flags) -> None:
        """Flags test.py may change on a trained model (e.g. TEMPURA's -mem_feat_lambda): written to the config,
        which the forward reads."""
        for name, value in flags.items():
            setattr(self.config, name, value)

    def config_dict(self) -> dict:
        return asdict(self.config)
