"""The building blocks of TEMPURA (vidsgg/models/tempura.py): the mixture-of-Gaussians head with its
uncertainties, the prototype memory attended by features, the object tracker and the temporal consistency loss."""
from __future__ import annotations

import torch
from torch import nn


class PrototypeMemory(nn.Module):
    """One prototype per class (a buffer, so it is saved in checkpoints), attended by features (one head) and mixed
    in: (1−λ)·x + λ·mem with a fixed λ, or a learned sigmoid gate (`automated`). Before the first `set` the
    features pass through unchanged. x (M,d) -> (M,d)."""

    def __init__(self, classes: int, dim: int, selection: str = "manual", lam: float = 0.5):
        super().__init__()
        self.lam = lam
        self.query, self.key = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.selector = nn.Linear(2 * dim, 1) if selection == "automated" else None
        self.register_buffer("memory", torch.zeros(classes, dim))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.ready):
            return x
        scores = self.query(x) @ self.key(self.memory).T / x.shape[1] ** 0.5
        mem = torch.softmax(scores, dim=1) @ self.memory
        if self.selector is not None:
            gate = torch.sigmoid(self.selector(torch.cat([x, mem], dim=1)))
            return (1 - gate) * x + gate * mem
        return (1 - self.lam) * x + self.lam * mem

    def train_when_ready(self) -> None:
        """The attention projections only shape the output once prototypes exist: until then they are frozen, so
        DDP (which needs a gradient for every parameter that requires one) does not wait for them."""
        ready = not self.ready.is_meta and bool(self.ready)  # meta device (summary.py): nothing to read
        for param in self.parameters():
            param.requires_grad_(ready)

    def accumulator(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed (sums (classes,d), weights (classes,)) for one pass over the training set."""
        return torch.zeros_like(self.memory), torch.zeros(self.memory.shape[0], device=self.memory.device)

    @staticmethod
    def accumulate(accumulator, source: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> None:
        """source (M,d) embeddings, labels (M,classes) multi-hot, weight (M,) per-sample weights."""
        sums, weights = accumulator
        sums += (labels * weight[:, None]).T @ source
        weights += (labels * weight[:, None]).sum(0)

    @torch.no_grad()
    def set(self, sums: torch.Tensor, weights: torch.Tensor) -> None:
        """Prototypes = weighted means of the classes seen; unseen classes keep their previous prototype."""
        present = weights > 0
        self.memory[present] = sums[present] / weights[present, None]
        self.ready.fill_(bool(self.ready) or bool(present.any()))


class GMMHead(nn.Module):
    """x (P,d) -> probs (P,C), aleatoric (P,C), epistemic (P,C), mean variance (scalar)."""

    def __init__(self, dim: int, classes: int, mixtures: int, softmax: bool):
        super().__init__()
        self.classes, self.mixtures, self.softmax = classes, mixtures, softmax
        self.mean = nn.Linear(dim, classes * mixtures)
        self.variance = nn.Linear(dim, classes * mixtures)
        self.weight = nn.Linear(dim, mixtures)
        # Start with small variances (σ² ≈ 0.05): with σ² ≈ 0.5 the sampled logits drown the signal early on.
        nn.init.constant_(self.variance.bias, -3.0)

    def forward(self, x: torch.Tensor):
        mean = self.mean(x).view(-1, self.mixtures, self.classes)
        variance = torch.sigmoid(self.variance(x)).view(-1, self.mixtures, self.classes)
        weight = torch.softmax(self.weight(x), dim=1)[:, :, None]  # (P, K, 1)
        logits = mean + variance.sqrt() * torch.randn_like(mean) if self.training else mean
        act = torch.softmax(logits, dim=2) if self.softmax else torch.sigmoid(logits)
        probs = (weight * act).sum(1)
        aleatoric = (weight * variance).sum(1)
        epistemic = (weight * (act - probs[:, None]) ** 2).sum(1)
        return probs, aleatoric, epistemic, variance.mean()


class ObjectTracker(nn.Module):
    """Refine RoI features along each track (same class within the video). features (N,C) -> (N,C)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, frames: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
        ids, track_of = torch.unique(tracks, return_inverse=True)
        order = torch.argsort(track_of * (int(frames.max()) + 1) + frames)
        counts = torch.bincount(track_of, minlength=len(ids))
        starts = torch.cumsum(counts, 0) - counts
        width = int(counts.max())
        slot = torch.arange(width, device=features.device)
        pad = slot[None] >= counts[:, None]
        index = order[torch.where(pad, torch.zeros_like(slot)[None], starts[:, None] + slot[None])]
        seq_frames = frames[index]
        far = (seq_frames[:, :, None] - seq_frames[:, None, :]).abs() >= self.window
        blocked = far | pad[:, None, :]
        blocked = blocked & ~torch.eye(width, dtype=torch.bool, device=features.device)[None]  # always see itself
        x = features[index]
        attended, _ = self.attention(x, x, x, attn_mask=blocked.repeat_interleave(self.heads, 0), need_weights=False)
        refined = self.norm(x + attended)
        out = torch.empty_like(features)
        out[index[~pad]] = refined[~pad]
        return out


def consistency_loss(features: torch.Tensor, frames: torch.Tensor, tracks: torch.Tensor, kind: str) -> torch.Tensor:
    """Temporal consistency of object features (N,C): same track = positive, other track = negative."""
    z = nn.functional.normalize(features, dim=1)
    same = tracks[:, None] == tracks[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive, negative = same & ~eye, ~same
    if kind == "euc_con":
        dist2 = torch.cdist(z, z).pow(2)
        pull = dist2[positive].mean() if positive.any() else z.new_zeros(())
        same_frame = frames[:, None] == frames[None, :]
        push_pairs = negative & same_frame
        push = (1.0 - dist2[push_pairs].sqrt()).clamp_min(0).pow(2).mean() if push_pairs.any() else z.new_zeros(())
        return pull + push
    logits = (z @ z.T / 0.1).masked_fill(eye, float("-inf"))
    anchors = positive.any(1)
    if not anchors.any():
        return z.new_zeros(())
    log_prob = logits.log_softmax(1)
    return -(log_prob.masked_fill(~positive, 0).sum(1)[anchors] / positive.sum(1)[anchors]).mean()
