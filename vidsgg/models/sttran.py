"""STTran (Cong et al., ICCV 2021): pair features → spatial encoder → temporal decoder → three relation heads.

forward(entry) takes the entry of one video (vidsgg.data.entries) with its features filled in
(features (N,C4), union_feat (P,C3,7,7)) and returns the prediction dict of the STTran evaluator format:
    attention_distribution (P,3) logits; spatial_distribution (P,6), contacting_distribution (P,17) sigmoid
    probabilities; rel_features (P,d) the decoder output; in SGCLS/SGDET also obj_logits (N,37),
    pred_labels (N,), pred_scores (N,); plus the entry's boxes/labels/scores/im_idx/pair_idx.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vidsgg.data.classes import NUM_ATTENTION, NUM_CONTACTING, NUM_SPATIAL
from vidsgg.models.layers import SpatialTemporalTransformer
from vidsgg.models.pair_features import ObjectClassifier, PairFeatures, box_context


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


def object_predictions(obj_logits: torch.Tensor, is_person: torch.Tensor, scores: torch.Tensor):
    """pred_labels / pred_scores: person boxes keep class 1 and their score; other boxes take the most likely
    non-background, non-person class and its probability."""
    probs = torch.softmax(obj_logits.detach(), dim=1)
    best_prob, best = probs[:, 2:].max(1)
    labels = torch.where(is_person, torch.ones_like(best), best + 2)
    return labels, torch.where(is_person, scores, best_prob)


class STTran(nn.Module):
    def __init__(self, config: STTranConfig, word_table: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.pair_features = PairFeatures(config.feature_dim, config.union_channels, config.proj_dim,
                                          config.embed_dim, word_table, config.union_dim,
                                          config.bn_momentum)
        self.object_classifier = (ObjectClassifier(config.feature_dim, config.embed_dim, word_table)
                                  if config.mode != "predcls" else None)
        self.transformer = SpatialTemporalTransformer(config.dim, config.heads, config.ffn_dim, config.spatial_layers,
                                                      config.temporal_layers, config.window, config.dropout)
        self.attention_head = nn.Linear(config.dim, NUM_ATTENTION)
        self.spatial_head = nn.Linear(config.dim, NUM_SPATIAL)
        self.contacting_head = nn.Linear(config.dim, NUM_CONTACTING)

    def classify_objects(self, entry: dict) -> dict:
        """PredCLS: the GT labels with score 1. Otherwise: the object classifier's logits and predictions."""
        if self.object_classifier is None:
            return {"labels": entry["labels"], "scores": entry["scores"]}
        obj_logits = self.object_classifier(entry["features"], box_context(entry["boxes"][:, 1:], entry["image_size"]))
        labels, scores = object_predictions(obj_logits, entry["is_person"], entry["scores"])
        return {"obj_logits": obj_logits, "pred_labels": labels, "pred_scores": scores}

    def heads(self, rel_features: torch.Tensor) -> dict:
        return {"attention_distribution": self.attention_head(rel_features),
                "spatial_distribution": torch.sigmoid(self.spatial_head(rel_features)),
                "contacting_distribution": torch.sigmoid(self.contacting_head(rel_features))}

    def forward(self, entry: dict) -> dict:
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
        out.update(self.classify_objects(entry))
        labels = out.get("pred_labels", entry["labels"])
        pair_features = self.pair_features(entry, labels)
        _, rel_features = self.transformer(pair_features, entry["im_idx"])
        out.update(self.heads(rel_features))
        out["rel_features"] = rel_features
        return out

    def config_dict(self) -> dict:
        return asdict(self.config)
