"""Stereo augmentations that keep left, right and disparity consistent (x_right = x_left - d after every step).

Order: photometric jitter -> spatial scale/stretch -> flips -> eraser (right view) -> crop with y-jitter.
The eraser comes after the flips so an erased box never moves into the left view (RAFT-Stereo #108).
All randomness comes from the `rng` passed in (common.seed.sample_rng), so a resumed run repeats it exactly.
Arrays: images (H, W, 3) float32 in [0, 1]; disparity (H, W) float32 px with NaN where invalid.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import List

import cv2
import numpy as np


@dataclass
class PhotometricConfig:
    enabled: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: List[float] = field(default_factory=lambda: [0.0, 1.4])
    hue: float = 0.16
    gamma: List[float] = field(default_factory=lambda: [0.8, 1.2])
    asymmetric_prob: float = 0.2  # probability of one draw per view instead of one for both


@dataclass
class ScaleConfig:
    enabled: bool = True
    prob: float = 1.0
    min_log2: float = -0.2
    max_log2: float = 0.4
    stretch_prob: float = 0.8
    max_stretch_log2: float = 0.2


@dataclass
class YJitterConfig:
    enabled: bool = True
    prob: float = 0.5
    max_px: int = 2


@dataclass
class EraserConfig:
    enabled: bool = True
    prob: float = 0.5
    max_boxes: int = 2
    min_size: int = 50
    max_size: int = 100


@dataclass
class AugmentationConfig:
    """`data.stereo_augmentation` of the config (`true` = these defaults, `false` = all off)."""
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    y_jitter: YJitterConfig = field(default_factory=YJitterConfig)
    eraser: EraserConfig = field(default_factory=EraserConfig)
    vflip_prob: float = 0.1
    hflip_prob: float = 0.5  # left/right swap + flip; applied only to samples that have right-view disparity


AUGMENTATION_DEFAULTS = asdict(AugmentationConfig())
NO_AUGMENTATION = {**{key: {**AUGMENTATION_DEFAULTS[key], "enabled": False}
                      for key in ("photometric", "scale", "y_jitter", "eraser")},
                   "vflip_prob": 0.0, "hflip_prob": 0.0}
# A dataset's `image_augmentation` names the image-only steps it gets (MoGe's name for colour jitter is "jittering").
IMAGE_AUGMENTATIONS = ("jittering", "erasing")


def photometric(left: np.ndarray, right: np.ndarray, cfg: dict, rng: np.random.Generator):
    """Brightness, contrast, saturation, hue, gamma; the same draw for both views, or with probability
    asymmetric_prob one draw per view."""

    def draw():
        return {"brightness": rng.uniform(1 - cfg["brightness"], 1 + cfg["brightness"]),
                "contrast": rng.uniform(1 - cfg["contrast"], 1 + cfg["contrast"]),
                "saturation": rng.uniform(*cfg["saturation"]), "hue": rng.uniform(-cfg["hue"], cfg["hue"]),
                "gamma": rng.uniform(*cfg["gamma"])}

    def apply(image: np.ndarray, p: dict) -> np.ndarray:
        image = image * p["brightness"]
        gray = image.mean(axis=2, keepdims=True)
        image = (image - gray.mean()) * p["contrast"] + gray.mean()
        gray = np.clip(image, 0, 1).mean(axis=2, keepdims=True)
        image = np.clip(gray + (image - gray) * p["saturation"], 0, 1).astype(np.float32)
        if p["hue"] != 0:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
            hsv[..., 0] = (hsv[..., 0] + 360.0 * p["hue"]) % 360.0
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return np.clip(image, 0, 1) ** p["gamma"]

    first = draw()
    second = draw() if rng.random() < cfg["asymmetric_prob"] else first
    return apply(left, first).astype(np.float32), apply(right, second).astype(np.float32)


def resize_disparity(disp: np.ndarray, new_w: int, new_h: int, sparse: bool) -> np.ndarray:
    """Resize (H, W) disparity (NaN = invalid) and multiply values by the x scale.

    Dense: linear interpolation, keeping only pixels whose whole neighbourhood was valid. Sparse (KITTI):
    every valid pixel is moved to its nearest new position, so invalid pixels are never blended in."""
    height, width = disp.shape
    scale_x, scale_y = new_w / width, new_h / height
    valid = np.isfinite(disp)
    if sparse:
        out = np.full((new_h, new_w), np.nan, np.float32)
        ys, xs = np.nonzero(valid)
        new_x = np.round((xs + 0.5) * scale_x - 0.5).astype(int)
        new_y = np.round((ys + 0.5) * scale_y - 0.5).astype(int)
        keep = (new_x >= 0) & (new_x < new_w) & (new_y >= 0) & (new_y < new_h)
        out[new_y[keep], new_x[keep]] = disp[ys[keep], xs[keep]] * scale_x
        return out
    filled = cv2.resize(np.where(valid, disp, 0).astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    coverage = cv2.resize(valid.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.where(coverage > 0.999, filled * scale_x, np.nan).astype(np.float32)


class StereoAugmentor:
    """__call__(left, right, disp_left, disp_right | None, crop_hw, rng) -> the same four, cropped to crop_hw.

    cfg: AUGMENTATION_DEFAULTS-shaped dict; image_augmentations: which of IMAGE_AUGMENTATIONS this dataset gets
    (the geometric steps apply to every dataset); sparse: labels are scattered points (KITTI)."""

    def __init__(self, cfg: dict | None = None, image_augmentations=IMAGE_AUGMENTATIONS, sparse: bool = False):
        self.cfg = copy.deepcopy(cfg if cfg is not None else AUGMENTATION_DEFAULTS)
        unknown = sorted(set(image_augmentations) - set(IMAGE_AUGMENTATIONS))
        if unknown:
            raise ValueError(f"Unknown image augmentations {unknown}; choose from {list(IMAGE_AUGMENTATIONS)}")
        self.image_augmentations = frozenset(image_augmentations)
        self.sparse = sparse

    def scale(self, left, right, disp_left, disp_right, crop_hw, rng):
        cfg = self.cfg["scale"]
        height, width = left.shape[:2]
        jitter = self.cfg["y_jitter"]
        margin = 2 * jitter["max_px"] if jitter["enabled"] else 0  # room for the right crop's vertical offset
        min_scale = max((crop_hw[0] + margin) / height, crop_hw[1] / width)  # the crop must fit
        scale_x = scale_y = 1.0
        if cfg["enabled"] and rng.random() < cfg["prob"]:
            scale_x = scale_y = 2 ** rng.uniform(cfg["min_log2"], cfg["max_log2"])
            if rng.random() < cfg["stretch_prob"]:
                scale_x *= 2 ** rng.uniform(-cfg["max_stretch_log2"], cfg["max_stretch_log2"])
                scale_y *= 2 ** rng.uniform(-cfg["max_stretch_log2"], cfg["max_stretch_log2"])
        scale_x, scale_y = max(scale_x, min_scale), max(scale_y, min_scale)
        if scale_x == 1.0 and scale_y == 1.0:
            return left, right, disp_left, disp_right
        new_w, new_h = int(np.ceil(width * scale_x)), int(np.ceil(height * scale_y))
        resize = lambda image: cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        disp_right = None if disp_right is None else resize_disparity(disp_right, new_w, new_h, self.sparse)
        return resize(left), resize(right), resize_disparity(disp_left, new_w, new_h, self.sparse), disp_right

    def flips(self, left, right, disp_left, disp_right, rng):
        if disp_right is not None and rng.random() < self.cfg["hflip_prob"]:
            # Mirroring swaps the roles of the views; the right view's disparity becomes the left's GT.
            left, right = right[:, ::-1], left[:, ::-1]
            disp_left, disp_right = disp_right[:, ::-1], disp_left[:, ::-1]
        if rng.random() < self.cfg["vflip_prob"]:
            left, right, disp_left = left[::-1], right[::-1], disp_left[::-1]
            disp_right = None if disp_right is None else disp_right[::-1]
        return left, right, disp_left, disp_right

    def erase(self, right: np.ndarray, rng) -> np.ndarray:
        cfg = self.cfg["eraser"]
        if not cfg["enabled"] or rng.random() >= cfg["prob"]:
            return right
        right = right.copy()
        height, width = right.shape[:2]
        mean_colour = right.reshape(-1, 3).mean(axis=0)
        for _ in range(rng.integers(1, cfg["max_boxes"] + 1)):
            box_w, box_h = rng.integers(cfg["min_size"], cfg["max_size"] + 1, size=2)
            x0, y0 = rng.integers(0, width), rng.integers(0, height)
            right[y0:y0 + box_h, x0:x0 + box_w] = mean_colour
        return right

    def __call__(self, left, right, disp_left, disp_right, crop_hw, rng: np.random.Generator):
        if "jittering" in self.image_augmentations and self.cfg["photometric"]["enabled"]:
            left, right = photometric(left, right, self.cfg["photometric"], rng)
        left, right, disp_left, disp_right = self.scale(left, right, disp_left, disp_right, crop_hw, rng)
        left, right, disp_left, disp_right = self.flips(left, right, disp_left, disp_right, rng)
        if "erasing" in self.image_augmentations:
            right = self.erase(right, rng)
        crop_h, crop_w = crop_hw
        height, width = left.shape[:2]
        jitter = self.cfg["y_jitter"]
        y0 = int(rng.integers(0, height - crop_h + 1))
        x0 = int(rng.integers(0, width - crop_w + 1))
        y_right = y0
        if jitter["enabled"] and rng.random() < jitter["prob"]:
            # Small vertical offset of the right crop: imperfect rectification, as in real rigs.
            y_right = int(np.clip(y0 + rng.integers(-jitter["max_px"], jitter["max_px"] + 1), 0, height - crop_h))
        window = (slice(y0, y0 + crop_h), slice(x0, x0 + crop_w))
        right_window = (slice(y_right, y_right + crop_h), slice(x0, x0 + crop_w))
        disp_right = None if disp_right is None else np.ascontiguousarray(disp_right[right_window])
        return (np.ascontiguousarray(left[window]), np.ascontiguousarray(right[right_window]),
                np.ascontiguousarray(disp_left[window]), disp_right)
