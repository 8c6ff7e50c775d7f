"""TEMPURA (Nag et al., CVPR 2023) on STTran's features and transformer: mixture-of-Gaussians relation heads with
uncertainties, a memory of per-predicate prototypes, and object temporal consistency.

GMM head of a category with C classes and K components: μ_k = Linear(d→C), π = softmax(Linear(d→K)),
σ²_k = sigmoid(Linear(d→C)). Training samples logits_k = μ_k + √σ²_k·ε, testing uses μ_k. Output probability
p = Σ_k π_k·act(logits_k) (softmax for attention, sigmoid for spatial/contacting); aleatoric = Σ_k π_k σ²_k,
epistemic = Σ_k π_k (act_k − p)² (both ≥ 0, per class). The attention output handed to the evaluator is log p
(the evaluator's softmax gives p back).

Memory: after each epoch, `memory_pass` collects the relation embeddings of the training pairs and sets one
prototype per predicate (mean, optionally weighted by 1/(1+uncertainty): -rel_mem_weight_type simple|al|ep|both;
pairs whose mean aleatoric uncertainty exceeds -uncertainty_threshold are left out). The relation features
attend to the 26 prototypes (one head) and the result is mixed in: manual, (1−λ)·rel + λ·mem with
-mem_feat_lambda λ; automated, a learned sigmoid gate. -mem_fusion early mixes into the pair features before the
transformer, late into the decoder output. The memory is a buffer: saved in checkpoints, restored on resume.

Tracking (-tracking True): the objects of a video are tracked by class (Action Genome has one instance per class
and video); a transformer layer over each track's frames, restricted to |Δframe| < -temporal_window, refines the
RoI features, and -obj_con_loss euc_con (pull same-track features together, push other tracks in the frame
beyond margin 1) or info_nce (temperature 0.1) weighted by -lambda_con keeps them temporally consistent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_PREDICATES, NUM_SPATIAL
from vidsgg.models.losses import margin_targets
from vidsgg.models.sttran import STTran, STTranConfig


@dataclass
class TempuraConfig(STTranConfig):
    num_mixtures: int = 4
    mem_feat_lambda: float = 0.5
    mem_feat_selection: str = "manual"     # manual | automated
    mem_fusion: str = "late"               # early | late
    rel_mem_weight_type: str = "simple"    # simple | al | ep | both
    tracking: bool = False
    obj_con_loss: str = "euc_con"          # euc_con | info_nce
    lambda_con: float = 1.0
    uncertainty_threshold: float = 0.0     # 0 = keep every pair in the memory
    gmm_regularization: float = 0.0        # weight of mean σ² in the loss
    temporal_window: int = 4               # frames a tracked object attends to (|Δt| < window)
    rel_loss_weighting: str = "none"       # none | al | ep


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


class TEMPURA(STTran):
    def __init__(self, config: TempuraConfig, word_table: torch.Tensor | None = None):
        super().__init__(config, word_table)
        d, k = config.dim, config.num_mixtures
        del self.attention_head, self.spatial_head, self.contacting_head
        self.gmm = nn.ModuleDict({"attention": GMMHead(d, NUM_ATTENTION, k, softmax=True),
                                  "spatial": GMMHead(d, NUM_SPATIAL, k, softmax=False),
                                  "contacting": GMMHead(d, NUM_CONTACTING, k, softmax=False)})
        self.memory_query, self.memory_key = nn.Linear(d, d), nn.Linear(d, d)
        self.selector = nn.Linear(2 * d, 1) if config.mem_feat_selection == "automated" else None
        self.register_buffer("memory", torch.zeros(NUM_PREDICATES, d))
        self.register_buffer("memory_ready", torch.zeros((), dtype=torch.bool))
        self.tracker = ObjectTracker(config.feature_dim, config.heads, config.temporal_window) if config.tracking else None

    def fuse_memory(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.memory_ready):
            return x
        scores = self.memory_query(x) @ self.memory_key(self.memory).T / x.shape[1] ** 0.5
        mem = torch.softmax(scores, dim=1) @ self.memory
        if self.selector is not None:
            gate = torch.sigmoid(self.selector(torch.cat([x, mem], dim=1)))
            return (1 - gate) * x + gate * mem
        lam = self.config.mem_feat_lambda
        return (1 - lam) * x + lam * mem

    def forward(self, entry: dict) -> dict:
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        out.update(self.classify_objects(entry))
        labels = out.get("pred_labels", entry["labels"])
        if self.tracker is not None:
            frames = entry["boxes"][:, 0].long()
            refined = self.tracker(entry["features"], frames, labels)
            out["tracked_features"], out["track_ids"], out["track_frames"] = refined, labels, frames
            entry = dict(entry, features=refined)
        pair_features = self.pair_features(entry, labels)
        if self.config.mem_fusion == "early":
            out["memory_source"] = pair_features
            pair_features = self.fuse_memory(pair_features)
        _, rel = self.transformer(pair_features, entry["im_idx"])
        if self.config.mem_fusion == "late":
            out["memory_source"] = rel
            rel = self.fuse_memory(rel)
        variances = []
        for name, head in self.gmm.items():
            probs, aleatoric, epistemic, variance = head(rel)
            out[f"{name}_distribution"] = probs.clamp_min(1e-8).log() if name == "attention" else probs
            out[f"{name}_aleatoric"], out[f"{name}_epistemic"] = aleatoric, epistemic
            variances.append(variance)
        out["mean_variance"] = torch.stack(variances).mean()
        out["rel_features"] = rel
        return out

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """NLL on log p for attention, BCE (or margin) on p for spatial/contacting, optionally weighted per pair by
        1/(1+uncertainty); object CE; GMM variance regulariser; temporal consistency."""
        has_gt = entry["has_gt"]
        cfg = self.config

        def pair_weight(name):
            if cfg.rel_loss_weighting == "none":
                return None
            unc = pred[f"{name}_{'aleatoric' if cfg.rel_loss_weighting == 'al' else 'epistemic'}"][has_gt]
            w = 1.0 / (1.0 + unc.mean(1).detach())
            return w / w.mean()

        nll = nn.functional.nll_loss(pred["attention_distribution"][has_gt], entry["attention_gt"][has_gt],
                                     reduction="none")
        w = pair_weight("attention")
        losses = {"attention": (nll * w).mean() if w is not None else nll.mean()}
        for name in ("spatial", "contacting"):
            probs, target = pred[f"{name}_distribution"][has_gt], entry[f"{name}_gt"][has_gt]
            if bce:
                per_pair = nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target,
                                                              reduction="none").mean(1)
            else:
                per_pair = nn.functional.multilabel_margin_loss(probs, margin_targets(target), reduction="none")
            w = pair_weight(name)
            losses[name] = (per_pair * w).mean() if w is not None else per_pair.mean()
        if "obj_logits" in pred:
            objects = ~entry["is_person"] & (entry["labels"] > 0)
            losses["object"] = nn.functional.cross_entropy(pred["obj_logits"][objects], entry["labels"][objects])
        if cfg.gmm_regularization > 0:
            losses["gmm_regularization"] = cfg.gmm_regularization * pred["mean_variance"]
        if self.tracker is not None:
            losses["consistency"] = cfg.lambda_con * consistency_loss(
                pred["tracked_features"], pred["track_frames"], pred["track_ids"], cfg.obj_con_loss)
        return losses

    @torch.no_grad()
    def accumulate_memory(self, pred: dict, entry: dict, sums: torch.Tensor, weights: torch.Tensor) -> None:
        """Add one video's relation embeddings to per-predicate weighted sums (26,d) and weights (26,)."""
        has_gt = entry["has_gt"]
        source = pred["memory_source"][has_gt]
        aleatoric = torch.cat([pred[f"{n}_aleatoric"] for n in ("attention", "spatial", "contacting")], 1)[has_gt]
        epistemic = torch.cat([pred[f"{n}_epistemic"] for n in ("attention", "spatial", "contacting")], 1)[has_gt]
        kind = self.config.rel_mem_weight_type
        w = torch.ones(len(source), device=source.device)
        if kind in ("al", "both"):
            w = w / (1 + aleatoric.mean(1))
        if kind in ("ep", "both"):
            w = w / (1 + epistemic.mean(1))
        if self.config.uncertainty_threshold > 0:
            w = w * (aleatoric.mean(1) <= self.config.uncertainty_threshold)
        labels = torch.cat([nn.functional.one_hot(entry["attention_gt"][has_gt], NUM_ATTENTION).float(),
                            entry["spatial_gt"][has_gt], entry["contacting_gt"][has_gt]], dim=1)  # (P', 26)
        sums += (labels * w[:, None]).T @ source
        weights += (labels * w[:, None]).sum(0)

    @torch.no_grad()
    def set_memory(self, sums: torch.Tensor, weights: torch.Tensor) -> None:
        present = weights > 0
        self.memory[present] = sums[present] / weights[present, None]
        self.memory_ready.fill_(bool(present.any()))
