"""Frozen ResNet feature extractor in the layout of STTran's Faster R-CNN: a stride-16 base (conv1..layer3),
RoIAlign 7×7 at 1/16, and layer4 + spatial mean as the per-object head.

Per frame it gives object features (N, C4) at the given boxes and union-box features (P, C3, 7, 7) for the
pairs; C3/C4 are 1024/2048 for ResNet-50/101 (the reference) and 256/512 for ResNet-18/34.
Weights: a local file (a torchvision ResNet state dict, a `vidsgg/train_detector.py` checkpoint whose backbone is
extracted, or jwyang's Faster R-CNN `faster_rcnn_ag.pth`, run in its own Caffe layout and input) or, without one,
a seeded random init with a warning.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.ops import roi_align

from vidsgg.features.masks import union_boxes

log = logging.getLogger(__name__)

DEPTHS = (18, 34, 50, 101, 152)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channels(depth: int) -> tuple[int, int]:
    """(layer3 channels, layer4 channels) of a ResNet of this depth."""
    return (256, 512) if depth in (18, 34) else (1024, 2048)


# jwyang/faster-rcnn.pytorch (STTran's faster_rcnn_ag.pth, {'model': ...}): RCNN_base = Sequential(conv1, bn1, relu,
# maxpool, layer1, layer2, layer3), RCNN_top = Sequential(layer4). Its RPN, RoI heads and box/class layers
# (RCNN_rpn.*, RCNN_cls_score.*, RCNN_bbox_pred.*) are not used here: SGDET boxes come from train_detector.py, and
# RCNN_cls_score is read by vidsgg.models.reference.import_reference (SGCLS's class distribution).
_JWYANG_BASE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3"}
# Its ResNet (lib/model/faster_rcnn/resnet.py, copied into STTran's fasterRCNN/) is the Caffe layout, which its
# weights were trained in: the first bottleneck of layer2/3/4 strides in its 1×1 conv1 (torchvision: in the 3×3
# conv2), the stem's max-pool has padding 0 and ceil_mode, and the input is BGR in 0–255 minus these pixel means,
# no std (STTran's dataloader/action_genome.py: imread, [:, :, ::-1], prep_im_for_blob).
CAFFE_BGR_MEANS = (102.9801, 115.9465, 122.7717)


def _from_jwyang_faster_rcnn(state: dict) -> dict:
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "RCNN_base" and parts[1] in _JWYANG_BASE:
            renamed[".".join([_JWYANG_BASE[parts[1]], *parts[2:]])] = value
        elif parts[0] == "RCNN_top" and parts[1] == "0":
            renamed[".".join(["layer4", *parts[2:]])] = value
    return renamed


def _to_caffe_layout(resnet: torchvision.models.ResNet) -> None:
    """torchvision's ResNet -> jwyang's: strides of the first bottleneck of each stage moved from conv2 to conv1
    (basic blocks stride in conv1 in both), the stem's max-pool with padding 0 and ceil_mode."""
    resnet.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for stage in (resnet.layer2, resnet.layer3, resnet.layer4):
        if isinstance(stage[0], torchvision.models.resnet.Bottleneck):
            stage[0].conv1.stride, stage[0].conv2.stride = stage[0].conv2.stride, (1, 1)


def _extract_resnet_state(state: dict, path: Path) -> tuple[dict, bool]:
    """(torchvision ResNet state dict, whether the file is jwyang's Caffe-layout Faster R-CNN)."""
    for wrapper in ("model", "state_dict"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    caffe = any(k.startswith("RCNN_base.") for k in state)
    if caffe:
        state = _from_jwyang_faster_rcnn(state)
    prefix = "backbone.body."  # torchvision detection checkpoints (our train_detector.py writes these)
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not any(k.startswith("layer3.") for k in state):
        raise ValueError(f"{path}: no ResNet weights found (expected keys like 'layer3.0.conv1.weight')")
    return state, caffe


def union_features(feature_maps: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor,
                   pairs: torch.Tensor) -> torch.Tensor:
    """RoIAlign 7×7 at 1/16 of each pair's union box: feature_maps (T,C3,h,w), boxes (N,4) xyxy in resized px,
    image_index (N,), pairs (P,2) -> (P, C3, 7, 7)."""
    unions = union_boxes(boxes[pairs[:, 0]], boxes[pairs[:, 1]])
    union_rois = torch.cat([image_index[pairs[:, 0]][:, None].to(boxes.dtype), unions], dim=1)
    return roi_align(feature_maps, union_rois, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=False)


class FeatureExtractor(nn.Module):
    """Frozen backbone. `forward(images, boxes, image_index, pairs)`:
    images (T,3,H,W) float in [0,1] after resizing; boxes (N,4) xyxy in resized px; image_index (N,) frame of
    each box; pairs (P,2) box indices -> object features (N, C4), union features (P, C3, 7, 7)."""

    def __init__(self, depth: int = 101, weights: str | Path | None = None, image_size: int = 600,
                 max_size: int = 1000, seed: int = 0):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"-backbone_depth must be one of {DEPTHS}, got {depth}")
        self.depth, self.image_size, self.max_size = depth, image_size, max_size
        self.caffe = False  # jwyang's Faster R-CNN weights: its layout and BGR input (see CAFFE_BGR_MEANS)
        with torch.random.fork_rng(devices=[]):  # a seeded random init, so the cache key is reproducible
            torch.manual_seed(seed)
            resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"-backbone_weights: file not found: {path}")
            state, self.caffe = _extract_resnet_state(torch.load(path, map_location="cpu", weights_only=True), path)
            if self.caffe:
                _to_caffe_layout(resnet)
                log.info("%s is jwyang's Faster R-CNN: Caffe-layout ResNet (strides in the 1×1 convs, ceil-mode "
                         "max-pool) on BGR 0–255 input minus the Caffe pixel means.", path)
            missing, _ = resnet.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise ValueError(f"{path}: backbone weights lack {missing[:5]}...")
            self.weights_name = str(path)
        else:
            log.warning("No -backbone_weights given: the ResNet-%d backbone is randomly initialised (seed %d). "
                        "Features are then only useful for tests and synthetic data.", depth, seed)
            self.weights_name = f"random-seed{seed}"
        self.base = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                  resnet.layer1, resnet.layer2, resnet.layer3)
        self.head = resnet.layer4
        self.c3, self.c4 = channels(depth)
        # (x - mean) / std on [0, 1] images; Caffe: BGR channel order, x·255 - the pixel means.
        mean, std = ((torch.tensor(CAFFE_BGR_MEANS) / 255, torch.full((3,), 1 / 255)) if self.caffe
                     else (torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)))
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: BatchNorm stays in inference mode
        return super().train(False)

    def digest(self) -> str:
        """A short hash of the architecture, the weights and the resize rule: the feature cache key."""
        layout = "-caffe" if self.caffe else ""  # (torchvision's layout keeps the key its caches were written under)
        sha = hashlib.sha1(f"resnet{self.depth}{layout}-{self.image_size}-{self.max_size}".encode())
        for name, tensor in self.state_dict().items():
            sha.update(name.encode())
            sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return sha.hexdigest()[:16]

    def scale_for(self, height: int, width: int) -> float:
        """Resize factor: short side to image_size, long side at most max_size (Faster R-CNN's rule; STTran's
        prep_im_for_blob has the cap commented out, which a -max_size above every frame's reproduces)."""
        scale = self.image_size / min(height, width)
        return min(scale, self.max_size / max(height, width))

    def prepare(self, images: list[np.ndarray]) -> tuple[torch.Tensor, float]:
        """RGB uint8 frames (H,W,3) of one video -> normalised (T,3,H',W') and the resize factor."""
        height, width = images[0].shape[:2]
        scale = self.scale_for(height, width)
        tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        if self.caffe:
            tensor = tensor.flip(1)  # RGB -> BGR
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        tensor = nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
        return (tensor.to(self.mean.device) - self.mean) / self.std, scale

    @torch.no_grad()
    def forward(self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor,
                pairs: torch.Tensor, chunk: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        feature_maps = torch.cat([self.base(images[i:i + chunk]) for i in range(0, len(images), chunk)])
        rois = torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)
        pooled = roi_align(feature_maps, rois, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=False)
        object_features = self.head(pooled).mean(dim=(2, 3))
        return object_features, union_features(feature_maps, boxes, image_index, pairs)
