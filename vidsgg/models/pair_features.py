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


def box_context(boxes: torch.Tensor, image_wh: tuple[float, float]) -> torch.Tensor:
    """(N,4) xyxy px -> (N,9) normalised [x1,y1,x2,y2,cx,cy,w,h,area] for the box MLP."""
    w, h = float(image_wh[0]), float(image_wh[1])
    b = boxes / boxes.new_tensor([w, h, w, h])
    wh = (b[:, 2:] - b[:, :2]).clamp_min(0)
    return torch.cat([b, (b[:, :2] + b[:, 2:]) / 2, wh, (wh[:, 0] * wh[:, 1])[:, None]], dim=1)


class ObjectClassifier(nn.Module):
    """SGCLS/SGDET object classifier: [RoI feature | class distribution × word table | box MLP (128)]
    → FC 1024 → ReLU → 37 logits. The distribution comes from a linear head on the RoI feature (the reference
    takes it from its detector's classifier)."""

    def __init__(self, feature_dim: int, embed_dim: int, word_table: torch.Tensor | None = None):
        super().__init__()
        self.distribution = nn.Linear(feature_dim, NUM_OBJECT_CLASSES)
        self.word = nn.Embedding(NUM_OBJECT_CLASSES, embed_dim)
        if word_table is not None:
            self.word.weight.data.copy_(word_table)
        self.box_mlp = nn.Sequential(nn.Linear(9, 64), nn.BatchNorm1d(64), nn.ReLU(inplace=True),
                                     nn.Linear(64, 128), nn.ReLU(inplace=True))
        self.classify = nn.Sequential(nn.Linear(feature_dim + embed_dim + 128, 1024), nn.ReLU(inplace=True),
                                      nn.Linear(1024, NUM_OBJECT_CLASSES))

    def embed(self, features: torch.Tensor, box_ctx: torch.Tensor) -> torch.Tensor:
        """features (N, C4), box_ctx (N, 9) -> the hidden object embedding (N, 1024) before the last layer."""
        soft = torch.softmax(self.distribution(features), dim=1)
        hidden = self.classify[0](torch.cat([features, soft @ self.word.weight, self.box_mlp(box_ctx)], dim=1))
        return self.classify[1](hidden)

    def forward(self, features: torch.Tensor, box_ctx: torch.Tensor) -> torch.Tensor:
        """features (N, C4), box_ctx (N, 9) -> logits (N, 37)."""
        return self.classify[2](self.embed(features, box_ctx))


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
