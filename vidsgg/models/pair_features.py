"""STTran's relation (pair) representation and the object classifier of SGCLS/SGDET.

Pair feature (d = 3·proj + 2·embed; 1936 = 3·512 + 2·200 in the paper):
    [subject FC(C4→proj) | object FC(C4→proj) | union branch → proj | word(subject class) | word(object class)]
Union branch: Conv1×1(C3→U) of the union RoI feature (P,C3,7,7) + the spatial-mask CNN on the 2×27×27 masks
(conv7 s2 → U/2, ReLU, BN, maxpool, conv3 → U, ReLU, BN), summed, then FC(U·7·7 → proj); U = 256 in the paper
(`-union_dim`, smaller only for tiny test configs). BatchNorm momentum 0.01 as the reference (`-bn_momentum`;
short runs need PyTorch's 0.1, or the running statistics used at evaluation stay near their init).
"""
from __future__ import annotations

import torch
from torch import nn

from vidsgg.data.classes import NUM_OBJECT_CLASSES
from vidsgg.features.masks import spatial_masks

OBJECT_HIDDEN = 1024  # width of the object classifier's hidden layer (reference: 1024)


def box_context(boxes: torch.Tensor, image_wh: tuple[float, float]) -> torch.Tensor:
    """(N,4) xyxy px -> (N,9) normalised [x1,y1,x2,y2,cx,cy,w,h,area] (SceneLLM's box MLP input)."""
    w, h = float(image_wh[0]), float(image_wh[1])
    b = boxes / boxes.new_tensor([w, h, w, h])
    wh = (b[:, 2:] - b[:, :2]).clamp_min(0)
    return torch.cat([b, (b[:, :2] + b[:, 2:]) / 2, wh, (wh[:, 0] * wh[:, 1])[:, None]], dim=1)


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """(N,4) xyxy px -> (N,4) [cx, cy, w, h] with the +1-pixel widths of the reference (its box MLP input)."""
    wh = boxes[:, 2:] - boxes[:, :2] + 1.0
    return torch.cat([boxes[:, :2] + 0.5 * wh, wh], dim=1)


class ObjectClassifier(nn.Module):
    """SGCLS/SGDET object classifier of STTran (`ObjectClassifier` of lib/sttran.py), in three steps:

        inputs(features, boxes) = [RoI feature (C4) | softmax(distribution(RoI))[:, 1:] @ word (E) |
                                   box MLP (BN → Linear 4→128 → ReLU → Dropout 0.1) of center_size(boxes) (128)]
        hidden(x) = ReLU(BN(Linear(C4+E+128 → 1024)))
        classify(h) = Linear(1024 → 37) logits (background, person, 35 objects)

    `distribution` (RoI → 37 logits) stands in for the detector's classifier (RCNN_cls_score of the reference's
    Faster R-CNN, which gives the class distribution the reference feeds in; `import_reference` loads it from the
    detector's weights); the word table has the 36 classes without background, as the reference's obj_embed.
    `num_classes`/`background` let EASG reuse the layout with its own class list (no background class)."""

    def __init__(self, feature_dim: int, embed_dim: int, word_table: torch.Tensor | None = None,
                 bn_momentum: float = 0.01, num_classes: int = NUM_OBJECT_CLASSES, background: bool = True):
        super().__init__()
        self.background = background
        self.distribution = nn.Linear(feature_dim, num_classes)
        self.word = nn.Embedding(num_classes - int(background), embed_dim)
        if word_table is not None:  # (num_classes, E) rows by class index
            self.word.weight.data.copy_(word_table[int(background):])
        # The reference's box BatchNorm has a tenth of the mask CNN's momentum (0.01 / 10).
        self.box_mlp = nn.Sequential(nn.BatchNorm1d(4, momentum=bn_momentum / 10), nn.Linear(4, 128),
                                     nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.hidden = nn.Sequential(nn.Linear(feature_dim + embed_dim + 128, OBJECT_HIDDEN),
                                    nn.BatchNorm1d(OBJECT_HIDDEN), nn.ReLU())
        self.classify = nn.Linear(OBJECT_HIDDEN, num_classes)

    def class_distribution(self, features: torch.Tensor) -> torch.Tensor:
        """features (N, C4) -> (N, classes without background) probabilities (the detector's distribution)."""
        logits = self.distribution(features)
        return torch.softmax(logits[:, 1:] if self.background else logits, dim=1)

    def inputs(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """features (N, C4), boxes (N, 4) xyxy px -> (N, C4 + E + 128) (the reference's obj_features)."""
        return torch.cat([features, self.class_distribution(features) @ self.word.weight,
                          self.box_mlp(center_size(boxes))], dim=1)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """features (N, C4), boxes (N, 4) xyxy px -> logits (N, classes)."""
        return self.classify(self.hidden(self.inputs(features, boxes)))


class PairFeatures(nn.Module):
    """(subject, object) representation. forward(entry) -> (P, 3·proj + 2·embed)."""

    def __init__(self, feature_dim: int = 2048, union_channels: int = 1024, proj_dim: int = 512,
                 embed_dim: int = 200, word_table: torch.Tensor | None = None, union_dim: int = 256,
                 bn_momentum: float = 0.01):
        super().__init__()
        self.subject_fc = nn.Linear(feature_dim, proj_dim)
        self.object_fc = nn.Linear(feature_dim, proj_dim)
        self.union_conv = nn.Conv2d(union_channels, union_dim, 1)
        half = union_dim // 2
        self.mask_conv = nn.Sequential(
            nn.Conv2d(2, half, 7, stride=2, padding=3), nn.ReLU(inplace=True), nn.BatchNorm2d(half, momentum=bn_momentum),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(half, union_dim, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(union_dim, momentum=bn_momentum))
        self.union_fc = nn.Linear(union_dim * 7 * 7, proj_dim)
        self.subject_word = nn.Embedding(NUM_OBJECT_CLASSES, embed_dim)
        self.object_word = nn.Embedding(NUM_OBJECT_CLASSES, embed_dim)
        if word_table is not None:
            self.subject_word.weight.data.copy_(word_table)
            self.object_word.weight.data.copy_(word_table)
        self.dim = 3 * proj_dim + 2 * embed_dim

    def forward(self, entry: dict, labels: torch.Tensor) -> torch.Tensor:
        """entry: features (N,C4), union_feat (P,C3,7,7), boxes (N,5), pair_idx (P,2); labels (N,) classes."""
        subject, obj = entry["pair_idx"][:, 0], entry["pair_idx"][:, 1]
        features, boxes = entry["features"], entry["boxes"][:, 1:]
        masks = spatial_masks(boxes[subject], boxes[obj])
        union = self.union_conv(entry["union_feat"]) + self.mask_conv(masks)
        return torch.cat([self.subject_fc(features[subject]), self.object_fc(features[obj]),
                          self.union_fc(union.flatten(1)), self.subject_word(labels[subject]),
                          self.object_word(labels[obj])], dim=1)
