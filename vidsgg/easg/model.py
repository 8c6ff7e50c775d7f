"""STTran for EASG (edges from the camera wearer's verb to the objects), built so that an Action Genome STTran
checkpoint initialises it by name and shape (`-resume_from AG_CKPT` loads the compatible tensors).

Shared with vidsgg/models/sttran.py under the same attribute names: `pair_features` (PairFeatures: subject /
object FCs, union branch, spatial-mask CNN, subject word table of the 37 AG classes, of which the camera wearer
uses "person"), `transformer` (SpatialTemporalTransformer) and, in sgcls/easgcls, `object_classifier`
(ObjectClassifier's box MLP and hidden layer). EASG-sized and new: `pair_features.object_word` (O classes),
`object_classifier.distribution / word / classify` (O classes, no background), `verb_fc` (Dv → d) and `verb_word` (V × d),
both zero-initialised and added to the pair feature so a loaded AG representation starts unchanged,
`verb_classifier` (easgcls: Dv → 1024 → LayerNorm → ReLU → V, LayerNorm instead of the reference's BatchNorm so
a single-graph item trains), and `edge_head` (d → E, sigmoid).

Modes (what is given / predicted): edgecls: GT verb and objects → edges; sgcls: GT verb → objects + edges;
easgcls: verb + objects + edges. As the reference, training feeds the GT object and verb classes to the word
embeddings; evaluation feeds the predicted ones.

forward(entry) (vidsgg.easg.entries, with features (N,C4) and union_feat (P,C3,7,7)) -> pred:
    boxes, labels, scores, im_idx, pair_idx, graph_idx copied from the entry;
    edge_distribution (P,E) sigmoid probabilities; rel_features (P,d);
    sgcls/easgcls: obj_logits (N,O) (rows of camera-wearer boxes are unused), pred_labels (N,);
    easgcls: verb_logits (G,V), pred_verbs (G,).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidsgg.easg.entries import CAMERA_WEARER_LABEL
from vidsgg.models.interface import RelationModel
from vidsgg.models.layers import SpatialTemporalTransformer
from vidsgg.models.losses import margin_targets
from vidsgg.models.pair_features import ObjectClassifier, PairFeatures
from vidsgg.models.sttran import STTranConfig
EASG_MODES = ("easgcls", "sgcls", "edgecls")


@dataclass
class EASGConfig(STTranConfig):
    mode: str = "easgcls"
    num_objects: int = 1     # objects.txt classes (no background)
    num_verbs: int = 1
    num_edges: int = 1
    verb_dim: int = 2304     # features_verb.pt width (Ego4D SlowFast: 2304)
    verb_hidden: int = 1024  # verb classifier hidden width (reference: 1024)


class EASGSTTran(RelationModel):
    def __init__(self, config: EASGConfig, subject_words: torch.Tensor | None = None,
                 object_words: torch.Tensor | None = None):
        """subject_words: (37, embed) AG table (GloVe) or None; object_words: (O, embed) or None (learned)."""
        super().__init__()
        if config.mode not in EASG_MODES:
            raise ValueError(f"EASG mode must be one of {EASG_MODES}, got {config.mode!r}")
        self.config = config
        self.pair_features = PairFeatures(config.feature_dim, config.union_channels, config.proj_dim,
                                          config.embed_dim, subject_words, config.union_dim, config.bn_momentum)
        self.pair_features.object_word = nn.Embedding(config.num_objects, config.embed_dim)
        if object_words is not None:
            self.pair_features.object_word.weight.data.copy_(object_words)
        self.object_classifier = (ObjectClassifier(config.feature_dim, config.embed_dim, object_words,
                                                   config.bn_momentum, config.num_objects, background=False)
                                  if config.mode != "edgecls" else None)
        self.verb_classifier = (nn.Sequential(nn.Linear(config.verb_dim, config.verb_hidden),
                                              nn.LayerNorm(config.verb_hidden), nn.ReLU(inplace=True),
                                              nn.Linear(config.verb_hidden, config.num_verbs))
                                if config.mode == "easgcls" else None)
        self.verb_fc = nn.Linear(config.verb_dim, config.dim)
        self.verb_word = nn.Embedding(config.num_verbs, config.dim)
        for tensor in (self.verb_fc.weight, self.verb_fc.bias, self.verb_word.weight):
            nn.init.zeros_(tensor)
        self.transformer = SpatialTemporalTransformer(config.dim, config.heads, config.ffn_dim, config.spatial_layers,
                                                      config.temporal_layers, config.window, config.dropout)
        self.edge_head = nn.Linear(config.dim, config.num_edges)

    @classmethod
    def from_config(cls, config: dict) -> "EASGSTTran":
        return cls(EASGConfig(**config))

    def forward(self, entry: dict) -> dict:
        out = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx", "graph_idx")}
        labels, verbs, mode = entry["labels"], entry["verb_gt"], self.config.mode
        missing = ([] if mode == "edgecls" or self.object_classifier is not None else ["an object classifier"]) + \
            ([] if mode != "easgcls" or self.verb_classifier is not None else ["a verb classifier"])
        if missing:
            raise ValueError(f"EASG mode {mode} needs {' and '.join(missing)}; this model was built for a mode "
                             "that is given those classes")
        if mode != "edgecls":  # a model trained in sgcls/easgcls evaluated in edgecls uses the GT classes
            obj_logits = self.object_classifier(entry["features"], entry["boxes"][:, 1:])
            predicted = torch.where(entry["is_person"], torch.full_like(labels, CAMERA_WEARER_LABEL),
                                    obj_logits.detach().argmax(1))
            out.update(obj_logits=obj_logits, pred_labels=predicted)
            if not self.training:
                labels = predicted
        if mode == "easgcls":
            verb_logits = self.verb_classifier(entry["features_verb"])
            out.update(verb_logits=verb_logits, pred_verbs=verb_logits.detach().argmax(1))
            if not self.training:
                verbs = out["pred_verbs"]
        graph = entry["graph_idx"]
        pair = (self.pair_features(entry, labels) + self.verb_fc(entry["features_verb"])[graph]
                + self.verb_word(verbs)[graph])
        _, rel_features = self.transformer(pair, entry["im_idx"])
        out["edge_distribution"] = torch.sigmoid(self.edge_head(rel_features))
        out["rel_features"] = rel_features
        return out

    def compute_losses(self, pred: dict, entry: dict, bce: bool = False) -> dict[str, torch.Tensor]:
        """edge: multi-label margin on the sigmoid outputs (reference) or BCE (-bce_loss); object / verb: CE."""
        probs, target = pred["edge_distribution"], entry["edge_gt"]
        if bce:
            losses = {"edge": nn.functional.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target)}
        else:
            losses = {"edge": nn.functional.multilabel_margin_loss(probs, margin_targets(target))}
        if "obj_logits" in pred:
            objects = ~entry["is_person"]
            losses["object"] = nn.functional.cross_entropy(pred["obj_logits"][objects], entry["labels"][objects])
        if "verb_logits" in pred:
            losses["verb"] = nn.functional.cross_entropy(pred["verb_logits"], entry["verb_gt"])
        return losses
