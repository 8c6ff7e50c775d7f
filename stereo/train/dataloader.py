"""Stereo data: disparity file formats, the three dataset layouts, weighted mixing, and per-batch crop sizes.

Layouts (one folder per dataset entry of the config):
  folder      left/rgb/NAME.{jpg,png}, right/rgb/NAME.*, left/disparity/NAME.{png,npy,pfm}
              (PNG = FoundationStereo depth_uint8 code), optional right/disparity/NAME.*
  middlebury  SCENE/im0.png, SCENE/im1.png, SCENE/disp0GT.pfm or SCENE/disp0.pfm (inf = invalid);
              the root may be one scene or hold scene folders
  kitti       image_2/NAME_10.png, image_3/NAME_10.png, disp_occ_0/NAME_10.png (uint16 / 256, 0 = invalid)

A sample (dict) as returned by the datasets here:
  "left", "right": (3, H, W) float32 RGB in [0, 1]
  "disparity":     (1, H, W) float32 px, x_right = x_left - d; 0 where invalid
  "valid":         (1, H, W) bool, finite and 0 < d < max_disparity
  "name":          str, the left image path
  "label_type":    str, training samples only: the dataset's loss group (config `label_type`)
A file that cannot be read becomes a SkippedSample (or raises in strict mode), per common.data.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from common.data import IMAGE_EXTENSIONS, BadSampleError, BadSamplePolicy, read_image
from common.seed import sample_rng
from stereo.train.augment import StereoAugmentor

FORMATS = ("folder", "middlebury", "kitti")
DEPTH_UINT8_SCALE = 1000.0
DEPTH_UINT8_MAX = (255 * 255 * 255 + 254 * 255 + 254) / DEPTH_UINT8_SCALE  # 16646.399 px (B, G <= 254)


def depth_uint8_encoding(disp: np.ndarray, scale: float = DEPTH_UINT8_SCALE) -> np.ndarray:
    """(H, W) disparity px -> (H, W, 3) uint8 RGB with value = (R·255·255 + G·255 + B) / scale.

    Base 255 as FoundationStereo's data were written (so B, G stay in 0..254); resolution 1/scale px."""
    disp = np.asarray(disp, dtype=np.float64)
    if not np.isfinite(disp).all() or (disp < 0).any() or disp.max(initial=0) > DEPTH_UINT8_MAX * DEPTH_UINT8_SCALE / scale:
        raise ValueError(f"depth_uint8 encodes finite disparities in [0, {DEPTH_UINT8_MAX}] px only")
    code = np.round(disp * scale).astype(np.int64)
    red, rest = np.divmod(code, 255 * 255)
    green, blue = np.divmod(rest, 255)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def depth_uint8_decoding(image: np.ndarray, scale: float = DEPTH_UINT8_SCALE) -> np.ndarray:
    """(H, W, 3) uint8 in RGB order -> (H, W) float32 px: (R·255·255 + G·255 + B) / scale."""
    image = np.asarray(image).astype(np.float64)
    return ((image[..., 0] * 255 * 255 + image[..., 1] * 255 + image[..., 2]) / scale).astype(np.float32)


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """PFM (grayscale 'Pf' or colour 'PF') -> (H, W) or (H, W, 3) float32, top row first."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("latin-1").strip()
        if header not in ("PF", "Pf"):
            raise BadSampleError(f"Not a PFM file (header {header!r}): {path}")
        dims = handle.readline().decode("latin-1")
        while dims.startswith("#"):
            dims = handle.readline().decode("latin-1")
        width, height = map(int, dims.split())
        scale = float(handle.readline().decode("latin-1").strip())
        data = np.frombuffer(handle.read(), dtype="<f4" if scale < 0 else ">f4")
    channels = 3 if header == "PF" else 1
    if data.size != width * height * channels:
        raise BadSampleError(f"PFM file {path} is truncated: {data.size} values for {width}x{height}x{channels}")
    data = data.reshape(height, width, channels) if channels == 3 else data.reshape(height, width)
    return np.ascontiguousarray(np.flipud(data)).astype(np.float32)  # PFM stores the bottom row first


def write_pfm(path: str | os.PathLike, array: np.ndarray) -> None:
    """(H, W) or (H, W, 3) float -> little-endian PFM."""
    array = np.asarray(array, dtype="<f4")
    header = "PF" if array.ndim == 3 else "Pf"
    with open(path, "wb") as handle:
        handle.write(f"{header}\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode("latin-1"))
        handle.write(np.ascontiguousarray(np.flipud(array)).tobytes())


def read_disparity(path: str | os.PathLike, kind: str = "folder") -> np.ndarray:
    """Disparity file -> (H, W) float32 px with NaN where invalid. kind "kitti": uint16 PNG / 256, 0 invalid;
    otherwise .png is depth_uint8, .npy and .pfm are raw px (inf/NaN invalid)."""
    path = str(path)
    if not os.path.isfile(path):
        raise BadSampleError(f"Disparity file not found: {path}")
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        disp = np.load(path).astype(np.float32)
    elif suffix == ".pfm":
        disp = read_pfm(path)
    elif suffix == ".png":
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise BadSampleError(f"Could not decode disparity PNG: {path}")
        if kind == "kitti":
            disp = np.where(raw > 0, raw.astype(np.float32) / 256.0, np.nan)
        else:
            if raw.ndim != 3 or raw.dtype != np.uint8:
                raise BadSampleError(f"depth_uint8 disparity must be an 8-bit 3-channel PNG: {path}")
            disp = depth_uint8_decoding(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))  # OpenCV reads BGR
    else:
        raise BadSampleError(f"Unsupported disparity file type {suffix!r}: {path}")
    if disp.ndim != 2:
        raise BadSampleError(f"Disparity must be a single-channel map, got shape {disp.shape}: {path}")
    return np.where(np.isfinite(disp), disp, np.nan).astype(np.float32)


def _with_stem(folder: Path, stem: str, suffixes) -> Path | None:
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def list_pairs(root: str | os.PathLike, fmt: str) -> list[dict]:
    """[{"left", "right", "disp_left", "disp_right" (or None)}] for a dataset folder of format `fmt`."""
    root = Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"Unknown dataset format {fmt!r}; expected one of {FORMATS}")
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    pairs = []
    if fmt == "folder":
        for left in sorted((root / "left" / "rgb").glob("*")):
            if left.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            right = _with_stem(root / "right" / "rgb", left.stem, IMAGE_EXTENSIONS) or root / "right" / "rgb" / left.name
            disp = _with_stem(root / "left" / "disparity", left.stem, (".png", ".npy", ".pfm"))
            pairs.append({"left": left, "right": right,
                          "disp_left": disp or root / "left" / "disparity" / f"{left.stem}.png",
                          "disp_right": _with_stem(root / "right" / "disparity", left.stem, (".png", ".npy", ".pfm"))})
    elif fmt == "middlebury":
        scenes = [root] if (root / "im0.png").is_file() else sorted(p for p in root.iterdir() if (p / "im0.png").is_file())
        for scene in scenes:
            disp = scene / "disp0GT.pfm" if (scene / "disp0GT.pfm").is_file() else scene / "disp0.pfm"
            pairs.append({"left": scene / "im0.png", "right": scene / "im1.png", "disp_left": disp,
                          "disp_right": _with_stem(scene, "disp1GT", (".pfm",)) or _with_stem(scene, "disp1", (".pfm",))})
    else:
        for left in sorted((root / "image_2").glob("*_10.png")):
            pairs.append({"left": left, "right": root / "image_3" / left.name,
                          "disp_left": root / "disp_occ_0" / left.name, "disp_right": None})
    if not pairs:
        raise FileNotFoundError(f"No stereo pairs found in {root} for format {fmt!r} (see stereo/README.md layouts)")
    return pairs


def load_pair(pair: dict, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Images (H, W, 3) float32 [0, 1] and disparities (H, W) float32 px, NaN invalid; errors name the file."""
    left = read_image(pair["left"]).astype(np.float32) / 255.0
    right = read_image(pair["right"]).astype(np.float32) / 255.0
    disp_left = read_disparity(pair["disp_left"], fmt)
    disp_right = read_disparity(pair["disp_right"], fmt) if pair["disp_right"] is not None else None
    for name, array in (("right image", right), ("left disparity", disp_left), ("right disparity", disp_right)):
        if array is not None and array.shape[:2] != left.shape[:2]:
            raise BadSampleError(f"{name} size {array.shape[:2]} differs from the left image {left.shape[:2]} "
                                 f"for {pair['left']}")
    return left, right, disp_left, disp_right


def to_sample(left: np.ndarray, right: np.ndarray, disp: np.ndarray, max_disparity: float, name: str) -> dict:
    """Arrays as `load_pair` gives them -> the sample dict of the module docstring."""
    valid = np.isfinite(disp) & (disp > 0) & (disp < max_disparity)
    as_chw = lambda image: torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).contiguous()
    return {"left": as_chw(left), "right": as_chw(right),
            "disparity": torch.from_numpy(np.where(valid, disp, 0).astype(np.float32))[None],
            "valid": torch.from_numpy(valid)[None], "name": name}


def has_sparse_labels(entry: dict) -> bool:
    """A dataset entry's GT is scattered points (resized point by point): `sparse_labels`, else KITTI's format."""
    return entry["format"] == "kitti" if entry.get("sparse_labels") is None else bool(entry["sparse_labels"])


class TrainingDataset(Dataset):
    """Several datasets mixed by weight, augmented and cropped. Indexed by (index, size_index) pairs from
    SizedBatchSampler; the sample drawn and its augmentation depend only on (seed, epoch, index).
    `image_sizes` are the crops as [W, H] (the config's order)."""

    def __init__(self, entries: list[dict], image_sizes: list, augmentation: dict, max_disparity: float,
                 seed: int = 0, strict: bool = False):
        self.sources = []
        for entry in entries:
            pairs = list_pairs(entry["path"], entry["format"])
            augmentor = StereoAugmentor(augmentation, entry["image_augmentation"], has_sparse_labels(entry))
            self.sources.append((entry, pairs, augmentor))
        weights = np.array([float(entry["weight"]) for entry in entries])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"data.datasets weights must be >= 0 with a positive sum, got {weights.tolist()}")
        self.probabilities = weights / weights.sum()
        self.crop_sizes_hw = [(int(height), int(width)) for width, height in image_sizes]
        self.max_disparity, self.seed, self.epoch = max_disparity, seed, 0
        self.policy = BadSamplePolicy(strict)
        self.length = sum(len(pairs) for _, pairs, _ in self.sources)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item) -> dict:
        index, size_index = item if isinstance(item, tuple) else (item, 0)
        rng = sample_rng(self.seed, self.epoch, index)
        entry, pairs, augmentor = self.sources[rng.choice(len(self.sources), p=self.probabilities)]
        pair = pairs[int(rng.integers(len(pairs)))]
        try:
            left, right, disp_left, disp_right = load_pair(pair, entry["format"])
        except (BadSampleError, OSError, ValueError) as error:
            return self.policy.handle(pair["left"], error)
        left, right, disp_left, _ = augmentor(left, right, disp_left, disp_right, self.crop_sizes_hw[size_index], rng)
        return {**to_sample(left, right, disp_left, self.max_disparity, str(pair["left"])),
                "label_type": entry["label_type"]}


class EvalDataset(Dataset):
    """Full-size pairs of one dataset folder, no augmentation (the model pads to ×32 itself)."""

    def __init__(self, path: str | os.PathLike, fmt: str, max_disparity: float, strict: bool = False):
        self.pairs, self.fmt, self.max_disparity = list_pairs(path, fmt), fmt, max_disparity
        self.policy = BadSamplePolicy(strict)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        try:
            left, right, disp_left, _ = load_pair(pair, self.fmt)
        except (BadSampleError, OSError, ValueError) as error:
            return self.policy.handle(pair["left"], error)
        return to_sample(left, right, disp_left, self.max_disparity, str(pair["left"]))


class SizedBatchSampler(Sampler):
    """Groups a (resumable) sampler's indices into batches and gives every batch one crop size:
    yields [(index, size_index), ...]. The size depends on (seed, epoch, first index of the batch), so a
    resumed run picks the same sizes."""

    def __init__(self, sampler, batch_size: int, num_sizes: int, seed: int = 0):
        self.sampler, self.batch_size, self.num_sizes, self.seed = sampler, batch_size, num_sizes, seed

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                size_index = int(sample_rng(self.seed + 1, self.sampler.epoch, batch[0]).integers(self.num_sizes))
                yield [(i, size_index) for i in batch]
                batch = []

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size
