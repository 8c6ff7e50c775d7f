"""Single frames of Something-Something v2 videos (or of LAQ's scene folders) for the VAE.

On-disk layouts (detected automatically under `data_path`):
- frames: `frames/<video_id>/img_XXXXX.jpg` (also accepted: the video folders directly under data_path).
  This is the layout LAQ reads too (`ffmpeg -start_number 0 ... img_%05d.jpg`).
- scenes: `scenes.csv` (column `scene_folder`) plus `scene_XXX/frame_NNNN.jpg`, LAQ's scene layout.

Split: the official label files (`train.json` / `validation.json`, or `something-something-v2-train.json` /
`-validation.json`) define it by video id when present; otherwise a deterministic split by a hash of the video id
(stable when videos are added or listed in another order).
"""
from __future__ import annotations

import bisect
import csv
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data import BadSampleError, BadSamplePolicy, image_to_tensor, read_image, sorted_frames
from common.seed import sample_rng
from vae_latent.vanilla_vae_model import to_model_range

log = logging.getLogger(__name__)

# data_params.random_flips -> the dimensions of a (C, H, W) image that may be flipped: W (left-right), H (upside down).
FLIP_DIMS = {"none": (), "horizontal": (2,), "both": (2, 1)}

LABEL_FILE_NAMES = {"train": ("train.json", "something-something-v2-train.json"),
                    "val": ("validation.json", "something-something-v2-validation.json")}


@dataclass(frozen=True)
class Video:
    video_id: str
    frames: tuple[Path, ...]


def _frames_root(data_path: Path) -> Path:
    return data_path / "frames" if (data_path / "frames").is_dir() else data_path


def discover_videos(data_path: str | Path) -> tuple[list[Video], str]:
    """All videos with at least one frame, sorted by id, and the layout name ("frames" or "scenes")."""
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise FileNotFoundError(
            f"Data folder not found: {data_path}. Expected {data_path}/frames/<video_id>/img_XXXXX.jpg "
            f"(or LAQ's {data_path}/scenes.csv + scene_XXX/frame_NNNN.jpg); set data_params.data_path.")
    if (data_path / "scenes.csv").is_file():
        layout, folders = "scenes", _scene_folders(data_path)
    else:
        layout, root = "frames", _frames_root(data_path)
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "labels")
    videos, empty = [], 0
    for folder in folders:
        frames = tuple(sorted_frames(folder)) if folder.is_dir() else ()
        if frames:
            videos.append(Video(folder.name, frames))
        else:
            empty += 1
    if empty:
        log.warning("%d video folders under %s have no frames and are ignored.", empty, data_path)
    if not videos:
        raise FileNotFoundError(f"No frames found under {data_path} ({layout} layout): expected "
                                "frames/<video_id>/img_XXXXX.jpg or scenes.csv + scene_XXX/frame_NNNN.jpg")
    return sorted(videos, key=lambda v: v.video_id), layout


def _scene_folders(data_path: Path) -> list[Path]:
    with open(data_path / "scenes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "scene_folder" not in rows[0]:
        raise BadSampleError(f"{data_path / 'scenes.csv'} has no 'scene_folder' column "
                             f"(columns: {', '.join(rows[0])})")
    names = dict.fromkeys(row["scene_folder"] for row in rows)  # ordered, unique
    return [data_path / name for name in names]


def find_label_files(data_path: Path, labels_dir: str | Path | None) -> dict[str, Path]:
    """{"train": path, "val": path} of the official split files, or {} when they are not both present."""
    folders = [Path(labels_dir)] if labels_dir else [data_path, data_path / "labels", data_path.parent / "labels"]
    if labels_dir and not Path(labels_dir).is_dir():
        raise FileNotFoundError(f"data_params.labels_dir={labels_dir} is not a folder")
    for folder in folders:
        found = {split: next((folder / n for n in names if (folder / n).is_file()), None)
                 for split, names in LABEL_FILE_NAMES.items()}
        if all(found.values()):
            return found
    if labels_dir:
        raise FileNotFoundError(f"data_params.labels_dir={labels_dir} holds no train.json + validation.json "
                                "(or something-something-v2-train/validation.json)")
    return {}


def _label_ids(path: Path) -> set[str]:
    entries = json.loads(path.read_text())
    if not isinstance(entries, list) or (entries and not isinstance(entries[0], dict)):
        raise ValueError(f"{path}: expected a JSON list of objects with an 'id' field (the official SSv2 format)")
    return {str(entry["id"]) for entry in entries}


def _hash_unit(video_id: str) -> float:
    return zlib.crc32(video_id.encode()) / 2**32


def split_videos(videos: list[Video], data_path: str | Path, labels_dir=None, val_fraction: float = 0.05,
                 max_val_videos: int | None = None) -> tuple[list[Video], list[Video], str]:
    """(train, val, how): by the official label files when present, else by a hash of the video id."""
    labels = find_label_files(Path(data_path), labels_dir)
    if labels:
        train_ids, val_ids = _label_ids(labels["train"]), _label_ids(labels["val"])
        train = [v for v in videos if v.video_id in train_ids]
        val = [v for v in videos if v.video_id in val_ids]
        if not train:
            raise FileNotFoundError(f"None of the {len(videos)} video folders under {data_path} is listed in "
                                    f"{labels['train']}: do the folder names match the 'id' fields?")
        how = f"official label files {labels['train'].name} / {labels['val'].name}"
    else:
        ranked = sorted(videos, key=lambda v: (_hash_unit(v.video_id), v.video_id))
        n_val = sum(_hash_unit(v.video_id) < val_fraction for v in videos)
        if val_fraction > 0 and n_val == 0 and len(videos) > 1:
            n_val = 1  # tiny datasets still get a validation video
        val_set = {v.video_id for v in ranked[:n_val]}
        train = [v for v in videos if v.video_id not in val_set]
        val = [v for v in videos if v.video_id in val_set]
        how = f"hash of the video id (val_fraction={val_fraction})"
    if max_val_videos is not None and len(val) > max_val_videos:
        val = sorted(val, key=lambda v: (_hash_unit(v.video_id), v.video_id))[:max_val_videos]
        val.sort(key=lambda v: v.video_id)
    return train, val, how


class FrameDataset(Dataset):
    """Frames of a list of videos, resized (squashed) to image_size x image_size.

    Item: {"image": float32 (3, S, S) in [-1, 1], "video_index": int64 (), "frame_index": int64 ()}, or a
    `common.data.SkippedSample` for an unreadable frame (strict=False), collated away by `collate_skipping`.

    frames_per_video="one": one sample per video; the frame is drawn from sample_rng(seed, epoch, index), so a
    resumed run draws the same frames (call `set_epoch` each epoch); fixed_frame=True takes the middle frame
    instead (validation, so every evaluation sees the same images). "all": every frame of every video is a sample.

    random_flips="horizontal" mirrors a sample left-right with probability 1/2, "both" also flips it upside down
    with probability 1/2 (independently); drawn from sample_rng(seed, epoch, index) like the frame, so a resumed
    run sees the same flips. "none" (the default, and always for validation) returns the frames as they are.
    """

    def __init__(self, videos: list[Video], image_size: int, frames_per_video: str = "one", seed: int = 0,
                 strict: bool = False, fixed_frame: bool = False, random_flips: str = "none"):
        if frames_per_video not in ("one", "all"):
            raise ValueError(f"frames_per_video must be 'one' or 'all', got {frames_per_video!r}")
        if random_flips not in FLIP_DIMS:
            raise ValueError(f"random_flips must be one of {', '.join(FLIP_DIMS)}, got {random_flips!r}")
        self.flip_dims = FLIP_DIMS[random_flips]
        self.videos, self.image_size, self.mode = videos, image_size, frames_per_video
        self.seed, self.fixed_frame, self.epoch = seed, fixed_frame, 0
        self.policy = BadSamplePolicy(strict)
        self.offsets = [0]
        for video in videos:
            self.offsets.append(self.offsets[-1] + len(video.frames))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos) if self.mode == "one" else self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """Sample index -> (video index, frame index) for this epoch."""
        if self.mode == "all":
            video_index = bisect.bisect_right(self.offsets, index) - 1
            return video_index, index - self.offsets[video_index]
        n_frames = len(self.videos[index].frames)
        if self.fixed_frame:
            return index, n_frames // 2
        return index, int(sample_rng(self.seed, self.epoch, index).integers(n_frames))

    def flips(self, index: int) -> list[int]:
        """The image dimensions (of a (C, H, W) tensor) this sample is flipped along in this epoch."""
        if not self.flip_dims:
            return []
        # A stream of its own (the extra key 1), so turning flips on does not change which frames "one" draws.
        coins = np.random.default_rng([int(self.seed), int(self.epoch), int(index), 1]).random(len(self.flip_dims))
        return [dim for dim, coin in zip(self.flip_dims, coins) if coin < 0.5]

    def __getitem__(self, index: int):
        video_index, frame_index = self.locate(index)
        path = self.videos[video_index].frames[frame_index]
        try:
            image = image_to_tensor(read_image(path, self.image_size))
        except BadSampleError as error:
            return self.policy.handle(path, error)
        if flips := self.flips(index):
            image = torch.flip(image, flips)
        return {"image": to_model_range(image), "video_index": torch.tensor(video_index),
                "frame_index": torch.tensor(frame_index)}


def build_datasets(data_params: dict, image_size: int, seed: int) -> tuple[FrameDataset, FrameDataset, str]:
    """Train and validation datasets from the config's data_params, and a one-line description of the split."""
    videos, layout = discover_videos(data_params["data_path"])
    train, val, how = split_videos(videos, data_params["data_path"], data_params["labels_dir"],
                                   data_params["val_fraction"], data_params["max_val_videos"])
    if not val:  # checked here, not after a whole epoch of training
        raise ValueError(f"The validation set is empty: the split by {how} puts none of the {len(videos)} videos "
                         f"under {data_params['data_path']} in it. Raise data_params.val_fraction (hash split) or "
                         "check that the ids of validation.json match the video folder names.")
    if not train:
        raise ValueError(f"The training set is empty: the split by {how} leaves no training video among the "
                         f"{len(videos)} under {data_params['data_path']}.")
    train_set = FrameDataset(train, image_size, data_params["frames_per_video"], seed, data_params["strict"],
                             random_flips=data_params["random_flips"])
    val_set = FrameDataset(val, image_size, data_params["frames_per_video"], seed, data_params["strict"],
                           fixed_frame=True)
    summary = (f"{layout} layout: {len(train)} train / {len(val)} val videos ({train_set.offsets[-1]} / "
               f"{val_set.offsets[-1]} frames), split by {how}")
    return train_set, val_set, summary
