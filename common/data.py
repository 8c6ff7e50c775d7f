"""Reading images and frame folders, and the bad-sample policy every project's datasets share.

Policy: by default a sample whose file cannot be read is *skipped and counted* — the dataset returns a
`SkippedSample`, `collate_skipping` drops it from the batch, and `BadSampleCounter` logs a summary of the
skipped files at the end of each epoch. In strict mode the dataset raises `BadSampleError` naming the file.
There is no retry loop: a bad file costs one slot in one batch, never a hang.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from common import dist

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
cv2.setNumThreads(1)  # DataLoader workers already parallelise; OpenCV threads would oversubscribe the cores


class BadSampleError(RuntimeError):
    """A data file is missing, unreadable or malformed. The message names the file and what is wrong."""


@dataclass(frozen=True)
class SkippedSample:
    path: str
    reason: str


def read_image(path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 image (H, W, 3), optionally resized to `size` (int = square, or (H, W)).

    Raises BadSampleError naming the file when it is missing, cannot be decoded, or is a truncated JPEG/PNG
    (OpenCV decodes those partially, prints a libjpeg warning and returns the image with a grey or garbled end).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise BadSampleError(f"Image file not found: {path}")
    problem = truncation(path)  # before decoding: OpenCV would decode the part that is there
    if problem:
        raise BadSampleError(f"Truncated image ({problem}): {path}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise BadSampleError(f"Could not decode image (corrupt or not an image?): {path}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        if image.shape[:2] != (height, width):
            shrinking = height * width < image.shape[0] * image.shape[1]
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TAIL_BYTES = 64


def truncation(path: str | os.PathLike) -> str | None:
    """Why a JPEG or PNG file is incomplete ("no end-of-image marker", ...), or None when it is complete or of
    another format. Fast path: only the last bytes are read when the file ends as it should."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
        if head.startswith(_JPEG_SOI):
            if tail.rstrip(b"\x00").endswith(_JPEG_EOI):  # zero padding after the end marker is common
                return None
            handle.seek(0)
            return _jpeg_truncation(handle.read())
        if head.startswith(_PNG_SIGNATURE):
            if _PNG_IEND in tail:
                return None
            handle.seek(0)
            return None if _PNG_IEND in handle.read() else "no IEND chunk"  # data may follow IEND
    return None


def _jpeg_truncation(data: bytes) -> str | None:
    """Walk the JPEG's segments (skipping APPn segments, so an EXIF thumbnail's end marker does not count) and its
    entropy-coded scans up to the end-of-image marker; bytes after that marker are allowed."""
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return f"bad marker at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xD9:
            return None
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > len(data):
            break
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data until the next marker that is not FF00 or RSTn
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= len(data):
                    return "no end-of-image marker (the file ends inside the image data)"
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
    return "no end-of-image marker"


def resolve_inside(root: str | os.PathLike, relative: str | os.PathLike, allow_outside: bool = False,
                   what: str = "path") -> Path:
    """`root / relative`, refused (BadSampleError naming `what` and both paths) when it leaves `root` through
    `..` or an absolute path, unless `allow_outside`. The check is on the path's text, so symbolic links inside
    the data root (a folder of frames linked from another disk) still work."""
    root_text = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(root_text, os.fspath(relative)))
    if not allow_outside and os.path.commonpath([root_text, joined]) != root_text:
        raise BadSampleError(f"{what} {os.fspath(relative)!r} points outside the data folder {root_text} "
                             f"(to {joined}); data files must lie inside it")
    return Path(joined)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


_TRAILING_INT = re.compile(r"(\d+)(?!.*\d)")


def frame_number(path: str | os.PathLike) -> int:
    """The last integer in a file's stem: frame_0012.jpg -> 12, img_00007.jpg -> 7."""
    stem = Path(path).stem
    match = _TRAILING_INT.search(stem)
    if match is None:
        raise BadSampleError(f"Frame file name has no frame number: {path}")
    return int(match.group(1))


def sorted_frames(folder: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files of a frame folder ordered by their frame number (not lexicographically)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadSampleError(f"Frame folder not found: {folder}")
    frames = [p for p in folder.iterdir() if p.suffix.lower() in extensions and _TRAILING_INT.search(p.stem)]
    return sorted(frames, key=frame_number)


class BadSamplePolicy:
    """What a dataset does with a bad file: raise (strict) or return a SkippedSample (and warn once per file)."""

    def __init__(self, strict: bool = False):
        self.strict = strict

    def handle(self, path: str | os.PathLike, error: Exception) -> SkippedSample:
        if self.strict:
            if isinstance(error, BadSampleError):
                raise error
            raise BadSampleError(f"{path}: {error}") from error
        log.warning("Skipping bad sample %s: %s", path, error)
        return SkippedSample(str(path), str(error))


def collate_skipping(samples: list):
    """default_collate over the samples that are not SkippedSample; the skipped ones travel in
    batch["skipped"] (a dict batch) so the main process can count them. An all-bad batch becomes None."""
    good = [s for s in samples if not isinstance(s, SkippedSample)]
    skipped = [s for s in samples if isinstance(s, SkippedSample)]
    if not good:
        return {"skipped": skipped, "empty": True} if skipped else None
    batch = default_collate(good)
    if isinstance(batch, dict):
        batch["skipped"] = skipped
    return batch


def empty_on_any_rank(batch) -> bool:
    """True when this rank's batch holds no usable sample (all skipped) or another rank's does not.

    Training loops drop such a step on every rank together: a rank that skipped alone would leave the others
    waiting in DDP's gradient all-reduce.
    """
    empty_here = batch is None or (isinstance(batch, dict) and bool(batch.get("empty")))
    return dist.any_rank(empty_here)


class BadSampleCounter:
    """Counts skipped samples in the main process (from batch["skipped"]) and logs an end-of-epoch summary."""

    def __init__(self):
        self.epoch = Counter()
        self.total = 0

    def update(self, batch) -> int:
        """Record and remove batch["skipped"]; returns how many were skipped in this batch."""
        if not isinstance(batch, dict):
            return 0
        skipped = batch.pop("skipped", [])
        for sample in skipped:
            self.epoch[sample.path] += 1
        self.total += len(skipped)
        return len(skipped)

    def end_epoch(self, logger: logging.Logger, epoch: int) -> int:
        """Log which files were skipped this epoch and reset; returns the count."""
        count = sum(self.epoch.values())
        if count:
            listed = ", ".join(f"{path} (x{n})" for path, n in self.epoch.most_common(10))
            more = "" if len(self.epoch) <= 10 else f" and {len(self.epoch) - 10} more files"
            logger.warning("Epoch %d: skipped %d bad samples from %d files: %s%s",
                           epoch, count, len(self.epoch), listed, more)
        self.epoch.clear()
        return count
