"""Each augmentation alone must keep the views consistent: warping the right view with the GT disparity
reproduces the left view (low photometric error), far better than a wrong disparity does."""
import copy

import cv2
import numpy as np
import pytest

from stereo.synth import make_scene
from stereo.train.augment import AUGMENTATION_DEFAULTS, StereoAugmentor, resize_disparity


def _all_off() -> dict:
    cfg = copy.deepcopy(AUGMENTATION_DEFAULTS)
    for key in ("photometric", "scale", "y_jitter", "eraser"):
        cfg[key]["enabled"] = False
    cfg["vflip_prob"] = cfg["hflip_prob"] = 0.0
    return cfg


def visible_mask(disp, disp_right) -> np.ndarray:
    """Pixels with valid disparity that land inside the right image and pass the left-right check (1 px)."""
    height, width = disp.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = (xx - np.nan_to_num(disp, nan=0.0)).astype(np.float32)
    back = cv2.remap(np.nan_to_num(disp_right, nan=-100.0), map_x, yy, cv2.INTER_NEAREST)
    return np.isfinite(disp) & (map_x >= 0) & (map_x <= width - 1) & (np.abs(back - disp) < 1.0)


def warp_error(left, right, disp, mask) -> float:
    """Mean |left(x) - right(x - d)| over the mask."""
    height, width = disp.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = (xx - np.nan_to_num(disp, nan=0.0)).astype(np.float32)
    warped = cv2.remap(right, map_x, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(warped - left)[mask].mean())


@pytest.fixture(scope="module")
def scene():
    return make_scene(np.random.default_rng(0), 96, 160, 40.0)


AUGMENTATIONS = {
    "none": lambda cfg: None,
    "photometric_same": lambda cfg: cfg["photometric"].update(enabled=True, asymmetric_prob=0.0),
    "scale_and_stretch": lambda cfg: cfg["scale"].update(enabled=True, stretch_prob=1.0, min_log2=0.2, max_log2=0.4),
    "y_jitter": lambda cfg: cfg["y_jitter"].update(enabled=True, prob=1.0, max_px=1),
    "eraser": lambda cfg: cfg["eraser"].update(enabled=True, prob=1.0, max_boxes=1, min_size=8, max_size=12),
    "vflip": lambda cfg: cfg.update(vflip_prob=1.0),
    "hflip_swap": lambda cfg: cfg.update(hflip_prob=1.0),
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentation_keeps_views_consistent(scene, name):
    cfg = _all_off()
    AUGMENTATIONS[name](cfg)
    augmentor = StereoAugmentor(cfg)
    for seed in range(3):
        left, right, disp, disp_right = augmentor(scene["left"], scene["right"], scene["disp_left"], scene["disp_right"],
                                         (64, 128), np.random.default_rng(seed))
        assert left.shape == (64, 128, 3) and right.shape == (64, 128, 3) and disp.shape == (64, 128)
        mask = visible_mask(disp, disp_right)
        assert mask.mean() > 0.5
        good = warp_error(left, right, disp, mask)
        if name == "y_jitter":
            # The jitter is a deliberate vertical offset of at most max_px rows (rectification error): undoing
            # the best offset within that range must restore consistency.
            good = min(warp_error(left, np.roll(right, dy, axis=0), disp, mask) for dy in (-1, 0, 1))
        wrong = warp_error(left, right, disp + 4.0, mask)
        assert good < 0.35 * wrong, (name, seed, good, wrong)
        assert good < 0.05, (name, seed, good)


def test_hflip_changes_the_pair_and_needs_right_disparity(scene):
    cfg = _all_off()
    cfg["hflip_prob"] = 1.0
    augmentor = StereoAugmentor(cfg)
    crop = scene["left"].shape[:2]
    flipped = augmentor(scene["left"], scene["right"], scene["disp_left"], scene["disp_right"], crop,
                        np.random.default_rng(0))
    np.testing.assert_array_equal(flipped[0], scene["right"][:, ::-1])
    np.testing.assert_array_equal(flipped[2], scene["disp_right"][:, ::-1])
    kept = augmentor(scene["left"], scene["right"], scene["disp_left"], None, crop, np.random.default_rng(0))
    np.testing.assert_array_equal(kept[0], scene["left"])  # no right GT: no swap


def test_scale_multiplies_disparity_by_the_x_scale(scene):
    disp = scene["disp_left"]
    doubled = resize_disparity(disp, disp.shape[1] * 2, disp.shape[0], sparse=False)
    inner = np.isfinite(doubled[:, 10:-10])
    np.testing.assert_allclose(np.nanmedian(doubled[:, 10:-10][inner]), 2 * np.median(disp[:, 5:-5]), rtol=0.1)


def test_sparse_resize_never_blends_invalid_pixels():
    disp = np.full((20, 20), np.nan, np.float32)
    disp[5, 5], disp[10, 12] = 7.0, 9.0
    out = resize_disparity(disp, 30, 30, sparse=True)
    assert np.isfinite(out).sum() == 2
    assert sorted(out[np.isfinite(out)].tolist()) == [10.5, 13.5]
