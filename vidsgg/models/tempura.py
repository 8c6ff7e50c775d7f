"""TEMPURA (Nag et al., CVPR 2023) on STTran's features and transformer: mixture-of-Gaussians heads with
uncertainties, memories of class prototypes, and object temporal consistency (parts in tempura_parts.py).

GMM head of a category with C classes and K components (-num_mixtures, -rel_head gmm; -obj_head gmm for the
object classifier): μ_k = Linear(d→C), π = softmax(Linear(d→K)), σ²_k = sigmoid(Linear(d→C)). Training samples
logits_k = μ_k + √σ²_k·ε, testing uses μ_k. Output p = Σ_k π_k·act(logits_k) (softmax for attention and objects,
sigmoid for spatial/contacting); aleatoric = Σ_k π_k σ²_k, epistemic = Σ_k π_k (act_k − p)² (both ≥ 0, per class).
Attention and object outputs handed on are log p (a softmax gives p back). -rel_head linear keeps STTran's heads.

Memory: after each epoch, `memory_pass` (engine.py) collects the relation embeddings of the training pairs and
sets one prototype per predicate (weighted mean, -rel_mem_weight_type simple|al|ep|both = 1, 1/(1+aleatoric),
1/(1+epistemic), both; pairs whose mean aleatoric uncertainty exceeds -uncertainty_threshold are left out).
-rel_mem_compute joint: one memory of the 26 predicates feeds the three heads; seperate: one memory per category
(3, 6, 17 prototypes), each feeding its own head. The relation features attend to the prototypes (one head) and
are mixed in with -mem_feat_lambda (manual) or a learned gate (automated); -mem_fusion early mixes into the pair
features before the transformer, late into the decoder output. -obj_mem_compute: the same over the 37 object
classes on the object classifier's hidden embedding (SGCLS/SGDET). Memories are buffers: saved in checkpoints.

Tracking (-tracking True): the objects of a video are tracked by class (Action Genome has one instance per class
and video); a transformer layer over each track's frames, restricted to |Δframe| < -temporal_window, refines the
RoI features, and -obj_con_loss euc_con (pull same-track features together, push other tracks in the frame
beyond margin 1) or info_nce (temperature 0.1) weighted by -lambda_con keeps them temporally consistent.
Loss weighting: -rel_loss_weighting / -obj_loss_weighting al|ep weight each pair's / object's loss by
1/(1+mean uncertainty), normalised to mean 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_OBJECT_CLASSES, NUM_PREDICATES, NUM_SPATIAL
from vidsgg.models.losses import margin_targets
from vidsgg.models.pair_features import box_context
from vidsgg.models.sttran import STTran, STTranConfig, object_predictions
from vidsgg.models.tempura_parts import GMMHead, ObjectTracker, PrototypeMemory, consistency_loss

CATEGORIES = {"attention": NUM_ATTENTION, "spatial": NUM_SPATIAL, "contacting": NUM_CONTACTING}
OBJECT_HIDDEN = 1024  # width of the object classifier's hidden layer (pair_features.ObjectClassifier)


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
    obj_loss_weighting: str = "none"       # none | al | ep (needs obj_head gmm)
    rel_head: str = "gmm"                  # gmm | linear
    obj_head: str = "linear"               # linear | gmm
    rel_mem_compute: str = "joint"         # joint | seperate (separate)
    obj_mem_compute: bool = False


def uncertainty_weight(uncertainty: torch.Tensor) -> torch.Tensor:
    """(M,C) uncertainties -> (M,) weights 1/(1+mean), normalised to mean 1 (no gradient through them)."""
    w = 1.0 / (1.0 + uncertainty.mean(1).detach())
    return w / w.mean()


class TEMPURA(STTran):
    def __init__(self, config: TempuraConfig, word_table: torch.Tensor | None = None):
        super().__init__(config, word_table)
        d, k = config.dim, config.num_mixtures
        lam, selection = config.mem_feat_lambda, config.mem_feat_selection
        self.gmm = None
        if config.rel_head == "gmm":
            del self.attention_head, self.spatial_head, self.contacting_head
            self.gmm = nn.ModuleDict({name: GMMHead(d, size, k, softmax=name == "attention")
                                      for name, size in CATEGORIES.items()})
        self.separate = config.rel_mem_compute in ("seperate", "separate")
        if self.separate:
            self.rel_memory = nn.ModuleDict({name: PrototypeMemory(size, d, selection, lam)
                                             for name, size in CATEGORIES.items()})
        else:
            self.rel_memory = PrototypeMemory(NUM_PREDICATES, d, selection, lam)
        self.obj_gmm = self.obj_memory = None
        if self.object_classifier is not None and config.obj_head == "gmm":
            del self.object_classifier.classify[2]
            self.obj_gmm = GMMHead(OBJECT_HIDDEN, NUM_OBJECT_CLASSES, k, softmax=True)
        if self.object_classifier is not None and config.obj_mem_compute:
            self.obj_memory = PrototypeMemory(NUM_OBJECT_CLASSES, OBJECT_HIDDEN, selection, lam)
        self.tracker = ObjectTracker(config.feature_dim, config.heads, config.temporal_window) if config.tracking else None

        self.start_epoch(0)

    def memories(self) -> list[PrototypeMemory]:
        memories = list(self.rel_memory.values()) if self.separate else [self.rel_memory]
        return memories + ([self.obj_memory] if self.obj_memory is not None else [])

    def start_epoch(self, epoch: int) -> None:
        """Memory attention trains from the first epoch after its prototypes exist (restored ones included)."""
        for memory in self.memories():
            memory.train_when_ready()

    def parameter_groups(self, lr: float) -> list[dict]:
        """Every parameter, the memory projections included while still frozen (AdamW skips them until then)."""
        return [{"params": list(self.parameters()), "lr": lr}]

    @classmethod
    def from_config(cls, config: dict) -> "TEMPURA":
        return cls(TempuraConfig(**config))

    def classify_objects(self, entry: dict) -> dict:
        """STTran's object classifier, with the object memory mixed into its hidden embedding and the GMM head
        (log-probabilities as obj_logits, per-class uncertainties) when asked."""
        if self.object_classifier is None or (self.obj_gmm is None and self.obj_memory is None):
            return super().classify_objects(entry)
        hidden = self.object_classifier.embed(entry["features"], box_context(entry["boxes"][:, 1:], entry["image_size"]))
        out = {"obj_embedding": hidden}
        if self.obj_memory is not None:
            hidden = self.obj_memory(hidden)
        if self.obj_gmm is not None:
            probs, out["obj_aleatoric"], out["obj_epistemic"], out["obj_mean_variance"] = self.obj_gmm(hidden)
            out["obj_logits"] = probs.clamp_min(1e-8).log()
        else:
            out["obj_logits"] = self.object_classifier.classify[2](hidden)
        out["pred_labels"], out["pred_scores"] = object_predictions(out["obj_logits"], entry["is_person"],
                                                                    entry["scores"])
        return out

    def fuse_memory(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The relation features each head sees: one memory-fused feature (joint) or one per category."""
        if self.separate:
            return {name: memory(x) for name, memory in self.rel_memory.items()}
        fused = self.rel_memory(x)
        return {name: fused for name in CATEGORIES}

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
        if self.config.mem_fusion == "early":  # joint memory only (options.validate)
            out["memory_source"] = pair_features
            _, rel = self.transformer(self.rel_memory(pair_features), entry["im_idx"])
            per_head = {name: rel for name in CATEGORIES}
        else:
            _, rel = self.transformer(pair_features, entry["im_idx"])
            out["memory_source"] = rel
            per_head = self.fuse_memory(rel)
        variances = []
        for name in CATEGORIES:
            if self.gmm is None:
                out.update({k: v for k, v in self.heads(per_head[name]).items() if k.startswith(name)})
                continue
            probs, aleatoric, epistemic, variance = self.gmm[name](per_head[name])
            out[f"{name}_distribution"] = probs.clamp_min(1e-8).log() if name == "attention" else probs
            out[f"{name}_aleatoric"], out[f"{name}_epistemic"] = aleatoric, epistemic
            variances.append(variance)
        if "obj_mean_variance" in out:
            variances.append(out["obj_mean_variance"])
        out["mean_variance"] = torch.stack(variances).mean() if variances else torch.zeros((), device=rel.device)
        out["rel_features"] = rel
        return out

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """Attention: NLL on log p (GMM) or CE on logits (linear); spatial/contacting: BCE (or margin) on p;
        optionally weighted per pair / object by 1/(1+uncertainty); object CE; GMM variance regulariser;
        temporal consistency."""
        has_gt = entry["has_gt"]
        cfg = self.config

        def weighted(per_item, prefix, kind, mask):
            if kind == "none":
                return per_item.mean()
            unc = pred[f"{prefix}_{'aleatoric' if kind == 'al' else 'epistemic'}"][mask]
            return (per_item * uncertainty_weight(unc)).mean()

        attention_loss = nn.functional.nll_loss if self.gmm is not None else nn.functional.cross_entropy
        per_pair = attention_loss(pred["attention_distribution"][has_gt], entry["attention_gt"][has_gt],
                                  reduction="none")
        losses = {"attention": weighted(per_pair, "attention", cfg.rel_loss_weighting, has_gt)}
        for name in ("spatial", "contacting"):
            probs, target = pred[f"{name}_distribution"][has_gt], entry[f"{name}_gt"][has_gt]
            if bce:
                per_pair = nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target,
                                                              reduction="none").mean(1)
            else:
                per_pair = nn.functional.multilabel_margin_loss(probs, margin_targets(target), reduction="none")
            losses[name] = weighted(per_pair, name, cfg.rel_loss_weighting, has_gt)
        if "obj_logits" in pred:
            objects = ~entry["is_person"] & (entry["labels"] > 0)
            per_object = nn.functional.cross_entropy(pred["obj_logits"][objects], entry["labels"][objects],
                                                     reduction="none")
            losses["object"] = weighted(per_object, "obj", cfg.obj_loss_weighting, objects)
        if cfg.gmm_regularization > 0:
            losses["gmm_regularization"] = cfg.gmm_regularization * pred["mean_variance"]
        if self.tracker is not None:
            losses["consistency"] = cfg.lambda_con * consistency_loss(
                pred["tracked_features"], pred["track_frames"], pred["track_ids"], cfg.obj_con_loss)
        return losses

    def memory_accumulators(self) -> dict:
        """Zeroed (sums, weights) per memory, filled by `accumulate_memory` over the training set."""
        memories = dict(self.rel_memory.items()) if self.separate else {"predicates": self.rel_memory}
        if self.obj_memory is not None:
            memories["objects"] = self.obj_memory
        return {name: memory.accumulator() for name, memory in memories.items()}

    @torch.no_grad()
    def accumulate_memory(self, pred: dict, entry: dict, accumulators: dict) -> None:
        """Add one video's relation (and object) embeddings to the per-class weighted sums."""
        has_gt = entry["has_gt"]
        source = pred["memory_source"][has_gt]
        w = torch.ones(len(source), device=source.device)
        if self.gmm is not None:
            names = tuple(CATEGORIES)
            aleatoric = torch.cat([pred[f"{n}_aleatoric"] for n in names], 1)[has_gt].mean(1)
            epistemic = torch.cat([pred[f"{n}_epistemic"] for n in names], 1)[has_gt].mean(1)
            kind = self.config.rel_mem_weight_type
            if kind in ("al", "both"):
                w = w / (1 + aleatoric)
            if kind in ("ep", "both"):
                w = w / (1 + epistemic)
            if self.config.uncertainty_threshold > 0:
                w = w * (aleatoric <= self.config.uncertainty_threshold)
        labels = {"attention": nn.functional.one_hot(entry["attention_gt"][has_gt], NUM_ATTENTION).float(),
                  "spatial": entry["spatial_gt"][has_gt], "contacting": entry["contacting_gt"][has_gt]}
        if self.separate:
            for name in CATEGORIES:
                PrototypeMemory.accumulate(accumulators[name], source, labels[name], w)
        else:
            PrototypeMemory.accumulate(accumulators["predicates"], source, torch.cat(list(labels.values()), 1), w)
        if self.obj_memory is not None:
            known = entry["labels"] > 0  # SGDET: unmatched detections (label 0) have no class to join
            one_hot = nn.functional.one_hot(entry["labels"][known], NUM_OBJECT_CLASSES).float()
            PrototypeMemory.accumulate(accumulators["objects"], pred["obj_embedding"][known], one_hot,
                                       torch.ones(int(known.sum()), device=one_hot.device))

    @torch.no_grad()
    def set_memory(self, accumulators: dict) -> None:
        for name, (sums, weights) in accumulators.items():
            memory = {"predicates": self.rel_memory, "objects": self.obj_memory}.get(name)
            (memory if memory is not None else self.rel_memory[name]).set(sums, weights)
