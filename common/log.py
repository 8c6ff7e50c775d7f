"""Rank-0 logging: a `logging` logger to stdout and a file, a TensorBoard writer, metrics.json, a progress bar.

Off rank 0 every writer here is a no-op, so training code calls them unconditionally.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from common import dist


def setup_logger(run_dir: str | os.PathLike | None, name: str = "train", filename: str = "log.txt",
                 is_main: bool | None = None, packages: tuple[str, ...] = ()) -> logging.Logger:
    """A logger that writes to stdout and `run_dir/filename` on the main rank and stays silent elsewhere.
    The module loggers (`logging.getLogger(__name__)`) of `common` and of `packages` (the project, e.g. "vidsgg")
    write to the same place, INFO and above."""
    is_main = dist.is_main() if is_main is None else is_main
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    if not is_main:
        logger.addHandler(logging.NullHandler())
        return logger
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(run_dir) / filename))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    # Library modules (common.checkpoint, the project's data/model modules) log through their module loggers:
    # without this their INFO lines are lost and their warnings reach stderr only.
    for package in ("common", *packages):
        logging.getLogger(package).handlers = handlers
        logging.getLogger(package).setLevel(logging.INFO)
    return logger


class Writer:
    """TensorBoard `SummaryWriter` on the main rank; every method is a no-op elsewhere (or when disabled)."""

    def __init__(self, log_dir: str | os.PathLike | None, enabled: bool | None = None):
        enabled = dist.is_main() if enabled is None else enabled
        self._tb = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import
            self._tb = SummaryWriter(log_dir=str(log_dir))

    def scalar(self, tag: str, value, step: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(tag, float(value), step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for tag, value in values.items():
            self.scalar(prefix + tag, value, step)

    def image(self, tag: str, image: torch.Tensor | np.ndarray, step: int) -> None:
        """image: (3,H,W) float in [0,1] or uint8, or (H,W,3) uint8 as `common.viz` makes."""
        if self._tb is None:
            return
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3:
            self._tb.add_image(tag, image, step, dataformats="HWC")
        else:
            self._tb.add_image(tag, image, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self._tb is not None:
            self._tb.add_histogram(tag, values, step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def write_metrics(run_dir: str | os.PathLike, metrics: Mapping[str, float], filename: str = "metrics.json") -> None:
    """Write the latest metrics (flat keys such as "val/psnr") to run_dir/metrics.json, atomically, main rank only."""
    if not dist.is_main():
        return
    clean = {}
    for key, value in metrics.items():
        value = value.item() if torch.is_tensor(value) else value
        clean[key] = float(value) if isinstance(value, (int, float, np.floating, np.integer)) else value
        if isinstance(clean[key], float) and not math.isfinite(clean[key]):
            clean[key] = None  # JSON has no NaN; a reader sees null
    path = Path(run_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_metrics(run_dir: str | os.PathLike, filename: str = "metrics.json") -> dict:
    return json.loads((Path(run_dir) / filename).read_text())


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", initial: int = 0):
    """tqdm bar with it/s and ETA on the main rank, a silent pass-through elsewhere or when stdout is not a TTY
    and PROGRESS is not set (so CI logs stay readable)."""
    from tqdm import tqdm

    show = dist.is_main() and (sys.stdout.isatty() or os.environ.get("PROGRESS") == "1")
    return tqdm(iterable, total=total, desc=desc, initial=initial, disable=not show, dynamic_ncols=True)
