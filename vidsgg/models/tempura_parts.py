"""The building blocks of TEMPURA (vidsgg/models/tempura.py), each as in sayaknag/unbiasedSGG: the mixture-of-
Gaussians head with its uncertainties (lib/gmm_heads.py), the prototype memory attended by features
(`memory_hallucinator` of lib/transformer.py and lib/tempura.py, built by lib/Memory.py), the object tracker
(`encoder_tran` of lib/tempura.py) and the two consistency losses of its train.py."""
from __future__ import annotations

import math

import torch
from torch import nn


class PrototypeMemory(nn.Module):
    """Class prototypes (buffers, so checkpoints hold them) attended by features and mixed in.

    `groups` names the prototype sets and their class counts (relations: attention 3, spatial 6, contacting 17;
    objects: 36). joint: one single-head attention (nn.MultiheadAttention without biases, with its value and
    output projections) over all prototypes concatenated; separate: one attention per group, the attended
    features averaged. Mixing: e·x + (1−e)·attended with e = λ (`manual`, given to forward) or
    sigmoid(Linear(x)) (`automated`). Before the first `set` the features pass through unchanged.
    forward(x (M,d), lam) -> (M,d)."""

    def __init__(self, dim: int, groups: dict[str, int], separate: bool = False, selection: str = "manual"):
        super().__init__()
        self.groups, self.separate = dict(groups), separate
        if separate:
            self.attention = nn.ModuleDict({g: nn.MultiheadAttention(dim, 1, bias=False, batch_first=True)
                                            for g in self.groups})
        else:
            self.attention = nn.MultiheadAttention(dim, 1, bias=False, batch_first=True)
        self.selector = nn.Linear(dim, 1) if selection == "automated" else None
        for group, classes in self.groups.items():
            self.register_buffer(f"{group}_prototypes", torch.zeros(classes, dim))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def prototypes(self, group: str) -> torch.Tensor:
        return getattr(self, f"{group}_prototypes")

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """x (M,d) -> the memory feature (M,d)."""
        query = x[None]
        if self.separate:
            attended = [self.attention[g](query, self.prototypes(g)[None], self.prototypes(g)[None],
                                          need_weights=False)[0][0] for g in self.groups]
            return torch.stack(attended).mean(0)
        memory = torch.cat([self.prototypes(g) for g in self.groups])[None]
        return self.attention(query, memory, memory, need_weights=False)[0][0]

    def forward(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        if not bool(self.ready):
            return x
        e = torch.sigmoid(self.selector(x)) if self.selector is not None else lam
        return e * x + (1 - e) * self.attend(x)

    def train_when_ready(self) -> None:
        """The attention only shapes the output once prototypes exist: until then it is frozen, so DDP (which
        needs a gradient for every parameter that requires one) does not wait for it."""
        ready = not self.ready.is_meta and bool(self.ready)  # meta device (summary.py): nothing to read
        for param in self.parameters():
            param.requires_grad_(ready)

    def accumulator(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Zeroed {group: (sums (classes,d), weights (classes,))} for one pass over the training set."""
        return {g: (torch.zeros_like(self.prototypes(g)),
                    torch.zeros(self.groups[g], device=self.prototypes(g).device)) for g in self.groups}

    @staticmethod
    def accumulate(accumulator, source: torch.Tensor, weights: torch.Tensor) -> None:
        """source (M,d) embeddings, weights (M,classes): the weight of each sample in each class's prototype
        (0 where the sample does not have the class)."""
        sums, totals = accumulator
        sums += weights.T @ source
        totals += weights.sum(0)

    @torch.no_grad()
    def set(self, accumulators: dict) -> None:
        """Prototypes = weighted means of the classes seen; unseen classes keep their previous prototype."""
        seen = False
        for group, (sums, totals) in accumulators.items():
            present = totals > 0
            self.prototypes(group)[present] = sums[present] / totals[present, None]
            seen = seen or bool(present.any())
        self.ready.fill_(bool(self.ready) or seen)


class GMMHead(nn.Module):
    """Mixture of K Gaussians over C logits. x (P,d) -> probs (P,C'), aleatoric (P,C), epistemic (P,C), mean σ².

    μ_k = mean(x) block k, σ²_k = sigmoid(variance(x)) block k, π = softmax(weight(x)) over K (the reference's
    mu_k / var_k / pi_k Linear layers, stacked). Training samples μ_k + √σ²_k·ε, evaluation uses μ_k;
    probs = Σ_k π_k act(logits_k), act = softmax (`softmax=True`) or sigmoid. With `drop_first` (the object head)
    the evaluation output is over classes 1.. only (softmax without the background class, C' = C − 1), as the
    reference. Uncertainties (from μ_k, as the reference's): aleatoric Σ_k π_k σ²_k, epistemic
    Σ_k π_k (act(μ_k) − Σ_j π_j act(μ_j))²."""

    def __init__(self, dim: int, classes: int, mixtures: int, softmax: bool, drop_first: bool = False):
        super().__init__()
        self.classes, self.mixtures, self.softmax, self.drop_first = classes, mixtures, softmax, drop_first
        self.mean = nn.Linear(dim, classes * mixtures)
        self.variance = nn.Linear(dim, classes * mixtures)
        self.weight = nn.Linear(dim, mixtures)
        # Start with small variances (σ² ≈ 0.05): with σ² ≈ 0.5 the sampled logits drown the signal early on.
        nn.init.constant_(self.variance.bias, -3.0)

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1) if self.softmax else torch.sigmoid(logits)

    def forward(self, x: torch.Tensor):
        mean = self.mean(x).view(-1, self.mixtures, self.classes)
        variance = torch.sigmoid(self.variance(x)).view(-1, self.mixtures, self.classes)
        weight = torch.softmax(self.weight(x), dim=1)[:, :, None]  # (P, K, 1)
        act_mean = self.activation(mean)
        expected = (weight * act_mean).sum(1)
        aleatoric = (weight * variance).sum(1)
        epistemic = (weight * (act_mean - expected[:, None]) ** 2).sum(1)
        if self.training:
            logits = mean + variance.sqrt() * torch.randn_like(mean)
        else:
            logits = mean[..., 1:] if self.drop_first else mean
        probs = (weight * self.activation(logits)).sum(1)
        return probs, aleatoric, epistemic, variance.mean()


def sinusoid_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (...,) long -> (..., dim) the sine/cosine position encoding of the Transformer paper."""
    div = torch.exp(torch.arange(0, dim, 2, device=positions.device) * (-math.log(10000.0) / dim))
    angle = positions[..., None].float() * div
    encoding = torch.zeros(*positions.shape, dim, device=positions.device)
    encoding[..., 0::2], encoding[..., 1::2] = torch.sin(angle), torch.cos(angle)
    return encoding


class ObjectTracker(nn.Module):
    """TEMPURA's object-sequence transformer: the boxes of a video grouped by their class (the argmax of the
    detector's distribution; Action Genome has about one instance per class), each group one sequence in frame
    order with the sine position of its frame among the group's frames (dropout 0.1), through 3 post-norm
    nn.TransformerEncoder layers (8 heads, FFN 1024). `window` > 0 additionally restricts attention to boxes
    less than `window` frames apart (0 = the whole video, as the reference).
    forward(x (N,C), frames (N,), groups (N,)) -> (N,C)."""

    def __init__(self, dim: int, heads: int = 8, ffn_dim: int = 1024, layers: int = 3, window: int = 0,
                 dropout: float = 0.1):
        super().__init__()
        self.window, self.heads = window, heads
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.position_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, frames: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        _, group_of = torch.unique(groups, return_inverse=True)
        order = torch.argsort(group_of * (int(frames.max()) + 1) + frames, stable=True)
        counts = torch.bincount(group_of)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(int(counts.max()), device=x.device)
        pad = slot[None] >= counts[:, None]
        index = order[torch.where(pad, torch.zeros_like(slot)[None], starts[:, None] + slot[None])]
        seq_frames = frames[index].masked_fill(pad, -1)
        # Position = rank of the box's frame among the distinct frames of its sequence.
        new_frame = torch.ones_like(pad)
        new_frame[:, 1:] = seq_frames[:, 1:] != seq_frames[:, :-1]
        position = (torch.cumsum(new_frame & ~pad, 1) - 1).clamp_min(0)
        y = self.position_dropout(x[index] + sinusoid_encoding(position, x.shape[1]))
        mask = None
        if self.window > 0:
            far = (seq_frames[:, :, None] - seq_frames[:, None, :]).abs() >= self.window
            far &= ~torch.eye(len(slot), dtype=torch.bool, device=x.device)[None]  # always see itself
            mask = far.repeat_interleave(self.heads, 0)
        y = self.encoder(y, mask=mask, src_key_padding_mask=pad)
        out = torch.empty_like(x)
        out[index[~pad]] = y[~pad]
        return out


def euclidean_contrastive_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """pytorch-metric-learning's ContrastiveLoss(pos_margin=0, neg_margin=1) as TEMPURA's `euc_con`: on
    L2-normalised features, the mean Euclidean distance over same-label pairs with a non-zero distance plus the
    mean of max(0, 1 − distance) over different-label pairs where it is non-zero (all ordered pairs i ≠ j)."""
    z = nn.functional.normalize(features, dim=1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pairs = ~eye
    distance = torch.cdist(z, z).masked_fill(eye, 0.0)  # the zero diagonal is never used
    pos = distance[same & pairs]
    neg = (1.0 - distance[~same]).clamp_min(0)
    total = z.new_zeros(())
    for losses in (pos, neg):
        nonzero = losses > 0
        if nonzero.any():
            total = total + losses[nonzero].mean()
    return total


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """TEMPURA's `info_nce` (its SupConLoss): per anchor, −Σ_{positives} log softmax_{j≠i}(z_i·z_j / τ) divided by
    the number of same-label samples (itself included), averaged over all anchors."""
    z = nn.functional.normalize(features, dim=1)
    logits = z @ z.T / temperature
    logits = logits - logits.max(1, keepdim=True).values.detach()
    off_diagonal = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    same = (labels[:, None] == labels[None, :]).float()
    log_prob = logits - torch.log((logits.exp() * off_diagonal).sum(1, keepdim=True) + 1e-12)
    return (-(same * off_diagonal * log_prob).sum(1) / same.sum(1)).mean()
