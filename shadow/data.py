"""Datasets: the `custom` folder layout (what `python -m shadow.synth` writes) and the public benchmark's
webdataset tar, read from a local path (never downloaded).

Every sample is a dict:
    object_image  (3, H, W) float32 in [-1, 1], the object with its background removed (0 outside the mask)
    mask          (1, H, W) float32 in {0, 1}, 1 = object
    shadow_map    (1, H, W) float32 in [0, 1], shadow strength (0 = no shadow)
    theta, phi, size   float32 scalars (degrees, degrees, light side in world units); batched to (B,)
    key           str, the file stem or tar key;  track  str, the benchmark track ("custom" for folders)

Layout problems found when the dataset is built (a missing mask or shadow file, a stem missing from
metadata.json, a parameter out of range, a non-PNG file) raise `DatasetError` naming the file; hidden files
(`.DS_Store`) are ignored, and metadata entries without an image are counted in a warning (an error if strict). Problems found
when a file is decoded (corrupt PNG, a shadow map outside [0, 1]) follow the shared bad-sample policy: skipped and
counted by default, `BadSampleError` naming the file in strict mode.
"""
from __future__ import annotations

import json
import logging
import os
import tarfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from common import dist
from common.data import BadSampleError, BadSamplePolicy, collate_skipping
from common.sampler import ResumableSampler
from common.seed import loader_generator, worker_init_fn

log = logging.getLogger(__name__)
PARAM_RANGES = {"theta": (0.0, 45.0), "phi": (0.0, 360.0), "size": (2.0, 8.0)}
BENCHMARK_PARTS = ("image.png", "mask.png", "shadow.png", "metadata.json")
VAL_FRACTION = 0.1


class DatasetError(ValueError):
    """The dataset on disk does not have the expected layout; the message names the file."""


def decode_png(data: bytes | str | os.PathLike, name: str, grey: bool) -> np.ndarray:
    """PNG bytes or a path -> (H, W, 3) uint8 RGB, or (H, W) float32 in [0, 1] (channel 0) when `grey`."""
    if isinstance(data, (bytes, bytearray)):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        if not os.path.isfile(data):
            raise BadSampleError(f"File not found: {data}")
        image = cv2.imread(str(data), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadSampleError(f"Could not decode PNG (corrupt or not an image?): {name}")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    if grey:
        channel0 = image if image.ndim == 2 else image[..., 2]  # OpenCV stores BGR: index 2 is the first (R)
        return channel0.astype(np.float32) / scale
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    rgb = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_BGR2RGB)
    return (rgb.astype(np.float32) / scale * 255.0 + 0.5).astype(np.uint8) if scale != 255.0 else rgb


def check_shadow_range(shadow: np.ndarray, name: str) -> np.ndarray:
    """A shadow map must be finite and inside [0, 1]; otherwise BadSampleError naming the file."""
    finite = np.isfinite(shadow)
    if not finite.all():
        raise BadSampleError(f"Shadow map {name} has non-finite values (outside [0, 1]).")
    if shadow.min() < 0.0 or shadow.max() > 1.0:
        raise BadSampleError(f"Shadow map {name} has values outside [0, 1] "
                             f"(min {shadow.min():.3g}, max {shadow.max():.3g}).")
    return shadow


def check_light(params: dict, name: str) -> dict:
    """theta, phi and size present, numeric and inside PARAM_RANGES; otherwise DatasetError naming `name`."""
    checked = {}
    for key, (low, high) in PARAM_RANGES.items():
        value = params.get(key) if isinstance(params, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise DatasetError(f"{name}: '{key}' is missing or not a number (found {value!r}).")
        if not low <= float(value) <= high:
            raise DatasetError(f"{name}: {key}={value} is outside the valid range [{low:g}, {high:g}].")
        checked[key] = float(value)
    return checked


def resize_shadow(shadow: np.ndarray, image_size: int) -> torch.Tensor:
    """(h, w) float shadow strength -> (1, image_size, image_size) float32 tensor in [0, 1] (area resampling)."""
    if shadow.shape[:2] != (image_size, image_size):
        shadow = cv2.resize(shadow.astype(np.float32), (image_size, image_size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.clip(shadow.astype(np.float32), 0.0, 1.0))[None]


def to_sample(rgb: np.ndarray, mask: np.ndarray, shadow: np.ndarray, light: dict, image_size: int, key: str,
              track: str) -> dict:
    """Resize to image_size, remove the background and convert to the documented tensors."""
    size = (image_size, image_size)
    resize = lambda a: a if a.shape[:2] == size else cv2.resize(a, size, interpolation=cv2.INTER_AREA)  # noqa: E731
    mask01 = (resize(mask.astype(np.float32)) > 0.5).astype(np.float32)
    rgb = resize(rgb).astype(np.float32) / 127.5 - 1.0
    return {
        "object_image": torch.from_numpy(rgb * mask01[..., None]).permute(2, 0, 1).contiguous(),
        "mask": torch.from_numpy(mask01)[None],
        "shadow_map": resize_shadow(shadow, image_size),
        "theta": torch.tensor(light["theta"], dtype=torch.float32),
        "phi": torch.tensor(light["phi"], dtype=torch.float32),
        "size": torch.tensor(light["size"], dtype=torch.float32),
        "key": key,
        "track": track,
    }


class ShadowFolderDataset(Dataset):
    """The `custom` layout: root/objects/*.png, root/masks/*.png, root/shadows/*.png with the same stems, and
    root/metadata.json mapping stem -> {"theta", "phi", "size"}. Samples are the sorted stems of objects/."""

    def __init__(self, root: str | os.PathLike, image_size: int, stems: list[str] | None = None,
                 strict: bool = False, index: tuple[list[str], dict[str, dict]] | None = None):
        self.root, self.image_size = Path(root), image_size
        self.policy = BadSamplePolicy(strict)
        all_stems, self.light = index_folder(self.root, strict) if index is None else index  # index: reuse a check
        self.stems = all_stems if stems is None else list(stems)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int):
        stem = self.stems[index]
        paths = {part: self.root / part / f"{stem}.png" for part in ("objects", "masks", "shadows")}
        try:
            rgb = decode_png(paths["objects"], str(paths["objects"]), grey=False)
            mask = decode_png(paths["masks"], str(paths["masks"]), grey=True)
            shadow = check_shadow_range(decode_png(paths["shadows"], str(paths["shadows"]), grey=True),
                                        str(paths["shadows"]))
        except BadSampleError as exc:
            return self.policy.handle(paths["objects"], exc)
        return to_sample(rgb, mask, shadow, self.light[stem], self.image_size, stem, "custom")

    def lights(self) -> np.ndarray:
        """(N, 3) float64 [θ, φ, size] of every sample, read from metadata.json (no image is decoded)."""
        return np.array([[self.light[s][k] for k in PARAM_RANGES] for s in self.stems], np.float64)

    def shadow_map(self, index: int) -> torch.Tensor:
        """(1, H, W) shadow strength of sample `index` at image_size; BadSampleError if it cannot be read."""
        path = self.root / "shadows" / f"{self.stems[index]}.png"
        return resize_shadow(check_shadow_range(decode_png(path, str(path), grey=True), str(path)), self.image_size)


def index_folder(root: Path, strict: bool = False) -> tuple[list[str], dict[str, dict]]:
    """Validate the `custom` layout and return (sorted stems, stem -> light parameters).

    Hidden files (`.DS_Store`, `._x.png` from macOS) are ignored. metadata.json entries without an object image
    are counted and logged as a warning, or raise DatasetError in strict mode."""
    for part in ("objects", "masks", "shadows"):
        if not (root / part).is_dir():
            raise DatasetError(f"Missing folder {root / part} (expected objects/, masks/, shadows/, metadata.json).")
    meta_path = root / "metadata.json"
    if not meta_path.is_file():
        raise DatasetError(f"Missing {meta_path} (stem -> theta, phi, size).")
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise DatasetError(f"{meta_path} must map each stem to its parameters, found {type(metadata).__name__}.")
    visible = {part: [p for p in sorted((root / part).iterdir()) if p.is_file() and not p.name.startswith(".")]
               for part in ("objects", "masks", "shadows")}
    for part, paths in visible.items():
        for path in paths:
            if path.suffix.lower() != ".png":
                raise DatasetError(f"{path} is not a PNG; the custom layout holds only .png files.")
    stems = [p.stem for p in visible["objects"]]
    if not stems:
        raise DatasetError(f"No PNG files in {root / 'objects'}.")
    light = {}
    for stem in stems:
        for part in ("masks", "shadows"):
            if not (root / part / f"{stem}.png").is_file():
                raise DatasetError(f"{root / part / (stem + '.png')} is missing (needed by objects/{stem}.png).")
        if stem not in metadata:
            raise DatasetError(f"{meta_path} has no entry for '{stem}' (objects/{stem}.png).")
        light[stem] = check_light(metadata[stem], f"{meta_path} ['{stem}']")
    orphans = sorted(set(metadata) - set(stems))
    if orphans:
        message = (f"{meta_path} has {len(orphans)} entries without an image in {root / 'objects'} "
                   f"(e.g. {', '.join(repr(k) for k in orphans[:3])})")
        if strict:
            raise DatasetError(message + ".")
        log.warning("%s; they are ignored.", message)
    return stems, light


class BenchmarkTarDataset(Dataset):
    """The benchmark's webdataset tar (keys such as softness_control_000 with image.png, mask.png, shadow.png,
    metadata.json). Read by byte offset, so it is a map-style dataset that any worker can index."""

    def __init__(self, tar_path: str | os.PathLike, image_size: int, keys: list[str] | None = None,
                 strict: bool = False):
        self.tar_path, self.image_size = Path(tar_path), image_size
        self.policy = BadSamplePolicy(strict)
        self.members, self.metadata = index_tar(self.tar_path)
        self.keys = sorted(self.members) if keys is None else list(keys)
        self._handle, self._pid = None, None

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, key: str, part: str) -> bytes:
        if self._pid != os.getpid():  # one file handle per worker process
            self._handle, self._pid = open(self.tar_path, "rb"), os.getpid()
        offset, size = self.members[key][part]
        self._handle.seek(offset)
        return self._handle.read(size)

    def __getitem__(self, index: int):
        key = self.keys[index]
        name = f"{self.tar_path}:{key}"
        try:
            rgb = decode_png(self._read(key, "image.png"), f"{name}.image.png", grey=False)
            mask = decode_png(self._read(key, "mask.png"), f"{name}.mask.png", grey=True)
            shadow = decode_png(self._read(key, "shadow.png"), f"{name}.shadow.png", grey=True)
            shadow = check_shadow_range(shadow, f"{name}.shadow.png")
        except BadSampleError as exc:
            return self.policy.handle(name, exc)
        meta = self.metadata[key]
        return to_sample(rgb, mask, shadow, check_light(meta, f"{name}.metadata.json"), self.image_size, key,
                         str(meta.get("track", "unknown")))

    def lights(self) -> np.ndarray:
        """(N, 3) float64 [θ, φ, size] of every sample, from the metadata (no image is decoded)."""
        return np.array([[float(self.metadata[key][k]) for k in PARAM_RANGES] for key in self.keys], np.float64)

    def shadow_map(self, index: int) -> torch.Tensor:
        """(1, H, W) shadow strength of sample `index` at image_size; BadSampleError if it cannot be read."""
        name = f"{self.tar_path}:{self.keys[index]}.shadow.png"
        shadow = check_shadow_range(decode_png(self._read(self.keys[index], "shadow.png"), name, grey=True), name)
        return resize_shadow(shadow, self.image_size)


def index_tar(tar_path: Path) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, dict]]:
    """key -> {part: (byte offset, size)} and key -> metadata, checking every key has the four parts."""
    if not tar_path.is_file():
        raise DatasetError(f"Benchmark tar not found: {tar_path} (download it yourself; this code never does).")
    members: dict[str, dict] = defaultdict(dict)
    with tarfile.open(tar_path, "r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = os.path.basename(info.name)
            if "." not in base:
                continue
            key, part = base.split(".", 1)  # webdataset: the key ends at the first dot of the file name
            members[os.path.join(os.path.dirname(info.name), key)][part] = (info.offset_data, info.size)
    if not members:
        raise DatasetError(f"{tar_path} holds no webdataset samples.")
    metadata = {}
    with open(tar_path, "rb") as handle:
        for key, parts in members.items():
            missing = [p for p in BENCHMARK_PARTS if p not in parts]
            if missing:
                raise DatasetError(f"{tar_path}: key '{key}' lacks {', '.join(missing)}.")
            handle.seek(parts["metadata.json"][0])
            try:
                meta = json.loads(handle.read(parts["metadata.json"][1]))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{tar_path}: {key}.metadata.json is not valid JSON: {exc}") from exc
            check_light(meta, f"{tar_path}:{key}.metadata.json")  # uses metadata["size"], never "r"
            metadata[key] = meta
    return dict(members), metadata


def split_keys(keys: list[str]) -> tuple[list[str], list[str]]:
    """Deterministic 90/10 split of the sorted keys: the first 90 % train, the last 10 % (at least one) validate."""
    keys = sorted(keys)
    n_val = max(1, round(len(keys) * VAL_FRACTION)) if len(keys) > 1 else 0
    return keys[:len(keys) - n_val], keys[len(keys) - n_val:]


def build_datasets(dataset_type: str, data_dir: str | os.PathLike, image_size: int,
                   strict: bool = False) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of `dataset_type` 'custom' (a folder) or 'benchmark' (a .tar file)."""
    if dataset_type == "custom":
        index = index_folder(Path(data_dir), strict)
        train_keys, val_keys = split_keys(index[0])
        return (ShadowFolderDataset(data_dir, image_size, train_keys, strict, index),
                ShadowFolderDataset(data_dir, image_size, val_keys, strict, index))
    if dataset_type == "benchmark":
        full = BenchmarkTarDataset(data_dir, image_size, strict=strict)
        log.warning("Training on the benchmark tar: it is the paper's test set, so validation numbers are not a "
                    "clean evaluation.")
        train_keys, val_keys = split_keys(full.keys)
        return (BenchmarkTarDataset(data_dir, image_size, train_keys, strict),
                BenchmarkTarDataset(data_dir, image_size, val_keys, strict))
    raise ValueError(f"Unknown dataset_type {dataset_type!r}; use 'custom' or 'benchmark'.")


def create_dataloaders(dataset_type: str, data_dir: str | os.PathLike, batch_size: int, num_workers: int,
                       image_size: int, strict: bool = False, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders. The train loader shuffles with a ResumableSampler sharded over the DDP ranks (call
    `loader.sampler.set_epoch(e)` and `start_at(n)`); the val loader reads its shard in order. Each loader has
    its own seeded generator, so making an iterator never draws from the global torch RNG. Batches are dicts
    as documented at the top of this module, with `skipped` listing bad samples (see common.data)."""
    train_set, val_set = build_datasets(dataset_type, data_dir, image_size, strict)
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist.is_initialized() \
        else (0, 1)
    train_sampler = ResumableSampler(train_set, num_replicas=world, rank=rank, seed=seed,
                                     drop_last=len(train_set) >= batch_size * world)
    val_sampler = DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
    common_args = dict(batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping,
                       worker_init_fn=worker_init_fn, persistent_workers=False, pin_memory=torch.cuda.is_available())
    train = DataLoader(train_set, sampler=train_sampler, drop_last=len(train_set) >= batch_size * world,
                       generator=loader_generator(seed), **common_args)
    val = DataLoader(val_set, sampler=val_sampler, shuffle=False, generator=loader_generator(seed), **common_args)
    return train, val
