"""STTran (Cong et al., ICCV 2021): pair features → spatial encoder → temporal decoder → three relation heads.

forward(entry) takes the entry of one video (vidsgg.data.entries) with its features filled in
(features (N,C4), union_feat (P,C3,7,7)) and returns the prediction dict of the STTran evaluator format:
    attention_distribution (P,3) logits; spatial_distribution (P,6), contacting_distribution (P,17) sigmoid
    probabilities; rel_features (P,d) the decoder output; pred_labels (N,), pred_scores (N,) (PredCLS and
    training: the entry's); in SGCLS/SGDET also obj_logits (N,37); plus boxes/labels/scores/im_idx/pair_idx of
    the entry the relations were predicted for (at SGCLS/SGDET evaluation: the pairs rebuilt from predictions,
    vidsgg.models.objects).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_SPATIAL
from vidsgg.models.interface import RelationModel
from vidsgg.models.layers import SpatialTemporalTransformer
from vidsgg.models.objects import pairs_from_predictions, sgcls_objects, sgdet_objects
from vidsgg.models.pair_features import ObjectClassifier, PairFeatures


@dataclass
class STTranConfig:
    mode: str = "predcls"
    feature_dim: int = 2048      # C4: RoI feature width of the backbone head (ResNet-50/101: 2048)
    union_channels: int = 1024   # C3: union RoI channels (ResNet-50/101 layer3: 1024)
    proj_dim: int = 512          # subject / object / union projections
    embed_dim: int = 200         # class-name embedding (GloVe-6B 200-d)
    union_dim: int = 256         # union branch / spatial-mask CNN channels
    bn_momentum: float = 0.01    # BatchNorm of the spatial-mask CNN (reference: 0.01)
    heads: int = 8
    ffn_dim: int = 2048          # -hidden_dim: transformer feed-forward width
    spatial_layers: int = 1      # -spatial_layer
    temporal_layers: int = 3     # -temporal_layer
    window: int = 2              # temporal sliding window (frames)
    dropout: float = 0.1

    @property
    def dim(self) -> int:
        return 3 * self.proj_dim + 2 * self.embed_dim


def empty_relations(out: dict, device: torch.device) -> dict:
    """A prediction without pairs (an evaluation entry whose frames hold no object besides the human)."""
    out.update(attention_distribution=torch.zeros(0, NUM_ATTENTION, device=device),
               spatial_distribution=torch.zeros(0, NUM_SPATIAL, device=device),
               contacting_distribution=torch.zeros(0, NUM_CONTACTING, device=device))
    return out


class STTran(RelationModel):
    def __init__(self, config: STTranConfig, word_table: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.pair_features = PairFeatures(config.feature_dim, config.union_channels, config.proj_dim,
                                          config.embed_dim, word_table, config.union_dim,
                                          config.bn_momentum)
        self.object_classifier = (ObjectClassifier(config.feature_dim, config.embed_dim, word_table,
                                                   config.bn_momentum)
                                  if config.mode != "predcls" else None)
        self.transformer = SpatialTemporalTransformer(config.dim, config.heads, config.ffn_dim, config.spatial_layers,
                                                      config.temporal_layers, config.window, config.dropout)
        self.attention_head = nn.Linear(config.dim, NUM_ATTENTION)
        self.spatial_head = nn.Linear(config.dim, NUM_SPATIAL)
        self.contacting_head = nn.Linear(config.dim, NUM_CONTACTING)

    def object_logits(self, entry: dict) -> dict:
        """SGCLS/SGDET: {"obj_logits": (N, 37)} of the object classifier (subclasses add their parts, and may
        give "obj_distribution" (N, 36), the evaluation-time class probabilities without background)."""
        return {"obj_logits": self.object_classifier(entry["features"], entry["boxes"][:, 1:])}

    def classify_objects(self, entry: dict) -> tuple[dict, dict]:
        """(object outputs, the entry to predict relations for).

        PredCLS, and every training entry: the entry's labels and scores (GT, or GT-matched detections), as the
        reference feeds the GT classes to the relation model in training; SGCLS/SGDET add the classifier's
        obj_logits. Evaluation entries of SGCLS/SGDET (they carry `human_candidate`): labels, scores, the human
        of each frame and the pairs come from predictions only (vidsgg.models.objects)."""
        out = {"pred_labels": entry["labels"], "pred_scores": entry["scores"]}
        if self.object_classifier is None:
            return out, entry
        out.update(self.object_logits(entry))
        if "human_candidate" not in entry:
            return out, entry
        distribution = out.get("obj_distribution")
        if distribution is None:
            distribution = torch.softmax(out["obj_logits"][:, 1:], dim=1)
        if self.config.mode == "sgdet":
            labels, scores, humans = sgdet_objects(distribution, entry)
        else:
            labels, scores, humans = sgcls_objects(distribution, entry["boxes"][:, 0].long())
        out.update(pred_labels=labels, pred_scores=scores)
        return out, pairs_from_predictions(entry, labels, humans)

    def heads(self, rel_features: torch.Tensor) -> dict:
        return {"attention_distribution": self.attention_head(rel_features),
                "spatial_distribution": torch.sigmoid(self.spatial_head(rel_features)),
                "contacting_distribution": torch.sigmoid(self.contacting_head(rel_features))}

    def forward(self, entry: dict) -> dict:
        objects, entry = self.classify_objects(entry)
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        out.update(objects)
        if not len(entry["pair_idx"]):
            return empty_relations(out, entry["boxes"].device)
        pair_features = self.pair_features(entry, out["pred_labels"])
        _, rel_features = self.transformer(pair_features, entry["im_idx"])
        out.update(self.heads(rel_features))
        out["rel_features"] = rel_features
        return out
