"""TEMPURA (Nag et al., CVPR 2023) on STTran's features and transformer, as sayaknag/unbiasedSGG's lib/tempura.py
and train.py: mixture-of-Gaussians heads with uncertainties, memories of class prototypes, and object temporal
consistency (parts in tempura_parts.py).

GMM heads (-rel_head gmm; -obj_head gmm for the object classifier), K components (-num_mixtures): μ_k, σ²_k
(sigmoid), π (softmax over K); training samples μ_k + √σ²_k·ε, evaluation uses μ_k; p = Σ_k π_k act(logits_k)
(softmax for attention and objects, sigmoid for spatial/contacting). Attention is handed on as log p (a softmax
gives p back); the object head's evaluation output is over the 36 classes without background.

Relation memory (-rel_mem_compute joint|seperate; none = off): prototypes per predicate of each category (3, 6,
17), the weighted mean of the training pairs' embeddings: the decoder output before the memory (-mem_fusion
late) or the spatial encoder's output (early). Weights (-rel_mem_weight_type): simple = 1; al / ep / both =
exp(u) of the pair's aleatoric / epistemic / summed uncertainty for that class, normalised over the class's
samples (lib/Memory.py + lib/Uncertainty.py). The features attend to the prototypes (one head, nn.MultiheadAttention
with value and output projections, no biases) and are mixed as e·x + (1−e)·mem, e = -mem_feat_lambda (manual)
or a learned sigmoid gate (automated); late fusion mixes into the decoder output, early into the spatial
encoder's output before the temporal decoder. joint attends over the 26 prototypes at once; seperate attends each
category's prototypes with its own attention and averages the three results. The object memory
(-obj_mem_compute, SGCLS/SGDET) does the same over the 36 object classes (unweighted means).

Object classifier (SGCLS/SGDET) = STTran's, with, in this order: -tracking (the 2376-d inputs of the boxes of one
class form a sequence through a 3-layer transformer with sine positions, ObjectTracker), the object memory, the
hidden layer, the linear or GMM head. Losses (train.py of the reference): attention NLL (GMM) / CE (linear),
spatial and contacting BCE (-mlm: multi-label margin), each pair's loss weighted by 1 + softmax over the video's
pairs of its summed uncertainty (-rel_loss_weighting al|ep; objects: -obj_loss_weighting, GMM head), object CE /
NLL over every box, -obj_con_loss euc_con|info_nce on the object features after tracking and memory, weighted
by -lambda_con. -gmm_regularization (w·mean σ²) and -uncertainty_threshold (pairs whose mean aleatoric
uncertainty exceeds it are left out of the memory) are ours.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_OBJECT_CLASSES, NUM_SPATIAL
from vidsgg.models.losses import margin_targets
from vidsgg.models.pair_features import OBJECT_HIDDEN
from vidsgg.models.sttran import STTran, STTranConfig, empty_relations
from vidsgg.models.tempura_parts import (GMMHead, ObjectTracker, PrototypeMemory, euclidean_contrastive_loss,
                                         supervised_contrastive_loss)

CATEGORIES = {"attention": NUM_ATTENTION, "spatial": NUM_SPATIAL, "contacting": NUM_CONTACTING}
OBJECT_GROUPS = {"objects": NUM_OBJECT_CLASSES - 1}  # prototypes of classes 1..36 (no background)


@dataclass
class TempuraConfig(STTranConfig):
    num_mixtures: int = 4
    mem_feat_lambda: float = 0.5
    mem_feat_selection: str = "manual"     # manual | automated
    mem_fusion: str = "late"               # early | late
    rel_mem_weight_type: str = "simple"    # simple | al | ep | both
    tracking: bool = False                 # SGCLS/SGDET
    obj_con_loss: str = "none"             # none | euc_con | info_nce
    lambda_con: float = 1.0
    uncertainty_threshold: float = 0.0     # 0 = keep every pair in the memory
    gmm_regularization: float = 0.0        # weight of mean σ² in the loss
    temporal_window: int = 0               # tracked boxes attend to boxes < window frames away (0 = all)
    rel_loss_weighting: str = "none"       # none | al | ep
    obj_loss_weighting: str = "none"       # none | al | ep (needs obj_head gmm)
    rel_head: str = "gmm"                  # gmm | linear
    obj_head: str = "linear"               # linear | gmm
    rel_mem_compute: str = "joint"         # joint | seperate (separate) | none
    obj_mem_compute: bool = False
    mlm: bool = False                      # multi-label margin instead of BCE for spatial/contacting


def uncertainty_weights(uncertainty: torch.Tensor) -> torch.Tensor:
    """(M,C) -> (M,) the reference's loss weights 1 + exp(Σ_c u)/Σ_M exp(Σ_c u) (no gradient through them)."""
    return 1 + torch.softmax(uncertainty.detach().sum(1), dim=0)


class TEMPURA(STTran):
    def __init__(self, config: TempuraConfig, word_table: torch.Tensor | None = None):
        super().__init__(config, word_table)
        d, k, selection = config.dim, config.num_mixtures, config.mem_feat_selection
        self.gmm = None
        if config.rel_head == "gmm":
            del self.attention_head, self.spatial_head, self.contacting_head
            self.gmm = nn.ModuleDict({name: GMMHead(d, size, k, softmax=name == "attention")
                                      for name, size in CATEGORIES.items()})
        self.rel_memory = None
        if config.rel_mem_compute != "none":
            separate = config.rel_mem_compute in ("seperate", "separate")
            self.rel_memory = PrototypeMemory(d, CATEGORIES, separate, selection)
        self.tracker = self.obj_memory = None
        if self.object_classifier is not None:
            inputs = config.feature_dim + config.embed_dim + 128
            if config.tracking:
                self.tracker = ObjectTracker(inputs, window=config.temporal_window)
            if config.obj_mem_compute:
                self.obj_memory = PrototypeMemory(inputs if config.tracking else OBJECT_HIDDEN, OBJECT_GROUPS,
                                                  selection=selection)
            if config.obj_head == "gmm":
                self.object_classifier.classify = GMMHead(OBJECT_HIDDEN, NUM_OBJECT_CLASSES, k, softmax=True,
                                                          drop_first=True)
        self.has_memory = bool(self.memories())
        self.start_epoch(0)

    def memories(self) -> list[PrototypeMemory]:
        return [m for m in (self.rel_memory, self.obj_memory) if m is not None]

    def start_epoch(self, epoch: int) -> None:
        """Memory attention trains from the first epoch after its prototypes exist (restored ones included)."""
        for memory in self.memories():
            memory.train_when_ready()

    def parameter_groups(self, lr: float) -> list[dict]:
        """Every parameter, the memory projections included while still frozen (AdamW skips them until then)."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def object_logits(self, entry: dict) -> dict:
        """The object classifier with tracking, the object memory and the GMM head as configured. Returns
        obj_logits (N,37) (GMM: log p, in training) or, GMM at evaluation, obj_distribution (N,36); the object
        features before / after the memory (object_features / object_mem_features); GMM uncertainties."""
        classifier, lam = self.object_classifier, self.config.mem_feat_lambda
        x = classifier.inputs(entry["features"], entry["boxes"][:, 1:])
        out = {}
        if self.tracker is not None:
            groups = classifier.class_distribution(entry["features"]).argmax(1)  # the detector's class
            x = self.tracker(x, entry["boxes"][:, 0].long(), groups)
            out["object_features"] = x
            x = self.obj_memory(x, lam) if self.obj_memory is not None else x
            out["object_mem_features"] = x
            hidden = classifier.hidden(x)
        else:
            hidden = classifier.hidden(x)
            out["object_features"] = hidden
            hidden = self.obj_memory(hidden, lam) if self.obj_memory is not None else hidden
            out["object_mem_features"] = hidden
        if not isinstance(classifier.classify, GMMHead):
            out["obj_logits"] = classifier.classify(hidden)
            return out
        probs, out["obj_aleatoric"], out["obj_epistemic"], out["obj_mean_variance"] = classifier.classify(hidden)
        out["obj_logits" if self.training else "obj_distribution"] = (probs + 1e-12).log() if self.training else probs
        return out

    def forward(self, entry: dict) -> dict:
        objects, entry = self.classify_objects(entry)
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        out.update(objects)
        if not len(entry["pair_idx"]):
            return empty_relations(out, entry["boxes"].device)
        im_idx, lam, early = entry["im_idx"], self.config.mem_feat_lambda, self.config.mem_fusion == "early"
        spatial = self.transformer.spatial_encode(self.pair_features(entry, out["pred_labels"]), im_idx)
        out["memory_source"] = spatial
        if early and self.rel_memory is not None:
            spatial = self.rel_memory(spatial, lam)
        rel = self.transformer.temporal_decode(spatial, im_idx)
        if not early and self.rel_memory is not None:
            out["memory_source"] = rel
            rel = self.rel_memory(rel, lam)
        if self.gmm is None:
            out.update(self.heads(rel))
        variances = []
        for name in CATEGORIES if self.gmm is not None else ():
            probs, out[f"{name}_aleatoric"], out[f"{name}_epistemic"], variance = self.gmm[name](rel)
            out[f"{name}_distribution"] = (probs + 1e-12).log() if name == "attention" else probs
            variances.append(variance)
        if "obj_mean_variance" in out:
            variances.append(out["obj_mean_variance"])
        out["mean_variance"] = torch.stack(variances).mean() if variances else torch.zeros((), device=rel.device)
        out["rel_features"] = rel
        return out

    def compute_losses(self, pred: dict, entry: dict, bce: bool) -> dict[str, torch.Tensor]:
        """The reference's losses (module docstring). `bce` (-bce_loss) is STTran's switch; TEMPURA uses BCE
        unless -mlm."""
        has_gt, cfg = entry["has_gt"], self.config

        def weighted(per_item, prefix, kind, mask):
            if kind == "none":
                return per_item.mean()
            weights = uncertainty_weights(pred[f"{prefix}_{'aleatoric' if kind == 'al' else 'epistemic'}"][mask])
            return (per_item * (weights if per_item.dim() == 1 else weights[:, None])).mean()

        attention_loss = nn.functional.nll_loss if self.gmm is not None else nn.functional.cross_entropy
        per_pair = attention_loss(pred["attention_distribution"][has_gt], entry["attention_gt"][has_gt],
                                  reduction="none")
        losses = {"attention": weighted(per_pair, "attention", cfg.rel_loss_weighting, has_gt)}
        for name in ("spatial", "contacting"):
            probs, target = pred[f"{name}_distribution"][has_gt], entry[f"{name}_gt"][has_gt]
            if cfg.mlm:
                per_pair = nn.functional.multilabel_margin_loss(probs, margin_targets(target), reduction="none")
            else:
                per_pair = nn.functional.binary_cross_entropy(probs, target, reduction="none")
            losses[name] = weighted(per_pair, name, cfg.rel_loss_weighting, has_gt)
        known = entry["labels"] > 0  # SGDET: an unmatched detection (0) has no class
        if "obj_logits" in pred:
            gmm = isinstance(self.object_classifier.classify, GMMHead)
            object_loss = nn.functional.nll_loss if gmm else nn.functional.cross_entropy
            per_object = object_loss(pred["obj_logits"][known], entry["labels"][known], reduction="none")
            losses["object"] = weighted(per_object, "obj", cfg.obj_loss_weighting, known)
        if cfg.obj_con_loss != "none" and "object_mem_features" in pred:
            contrastive = euclidean_contrastive_loss if cfg.obj_con_loss == "euc_con" else supervised_contrastive_loss
            losses["consistency"] = cfg.lambda_con * contrastive(pred["object_mem_features"][known],
                                                                  entry["labels"][known])
        if cfg.gmm_regularization > 0:
            losses["gmm_regularization"] = cfg.gmm_regularization * pred["mean_variance"]
        return losses

    def memory_accumulators(self) -> dict:
        """Zeroed {group: (sums, weights)} per prototype group (attention, spatial, contacting, objects)."""
        return {g: acc for memory in self.memories() for g, acc in memory.accumulator().items()}

    @torch.no_grad()
    def accumulate_memory(self, pred: dict, entry: dict, accumulators: dict) -> None:
        """Add one training video's relation (and object) embeddings to the per-class weighted sums."""
        if self.rel_memory is not None:
            has_gt = entry["has_gt"]
            source = pred["memory_source"][has_gt]
            labels = {"attention": nn.functional.one_hot(entry["attention_gt"][has_gt], NUM_ATTENTION).float(),
                      "spatial": entry["spatial_gt"][has_gt], "contacting": entry["contacting_gt"][has_gt]}
            keep = torch.ones(len(source), device=source.device)
            kind = self.config.rel_mem_weight_type
            if self.gmm is not None and self.config.uncertainty_threshold > 0:
                mean_aleatoric = torch.cat([pred[f"{n}_aleatoric"] for n in CATEGORIES], 1)[has_gt].mean(1)
                keep = (mean_aleatoric <= self.config.uncertainty_threshold).float()
            for name in CATEGORIES:
                weights = labels[name] * keep[:, None]
                if kind != "simple":  # option_checks.validate: needs the GMM heads
                    uncertainty = {"al": pred[f"{name}_aleatoric"], "ep": pred[f"{name}_epistemic"],
                                   "both": pred[f"{name}_aleatoric"] + pred[f"{name}_epistemic"]}[kind]
                    weights = weights * uncertainty[has_gt].exp()
                PrototypeMemory.accumulate(accumulators[name], source, weights)
        if self.obj_memory is not None:
            known = entry["labels"] > 0
            one_hot = nn.functional.one_hot(entry["labels"][known], NUM_OBJECT_CLASSES).float()[:, 1:]
            PrototypeMemory.accumulate(accumulators["objects"], pred["object_features"][known], one_hot)

    @torch.no_grad()
    def set_memory(self, accumulators: dict) -> None:
        for memory in self.memories():
            memory.set({g: accumulators[g] for g in memory.groups})
