"""WebDataset tar shards of frame pairs: writing (from either on-disk layout) and reading (split by node and by
worker, buffer shuffle).

A shard sample holds `first.jpg`, `future.jpg` (JPEG bytes) and `json` ({"offset", "label", "scene"});
`index.json` next to the shards lists them per split with sample counts. The reader yields the same dict as
`laq.data.datasets` (first/future float32 (3, S, S) in [0, 1], offset, label, scene).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
import webdataset as wds

from common.data import BadSampleError, BadSamplePolicy, image_to_tensor

log = logging.getLogger(__name__)


def _jpeg_bytes(path: Path, image_size: int | None) -> bytes:
    if not image_size:
        return path.read_bytes()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise BadSampleError(f"Could not decode image (corrupt or not an image?): {path}")
    image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise BadSampleError(f"Could not re-encode {path}")
    return encoded.tobytes()


def write_split(pairs: Iterable[tuple[Path, Path, int, int, int]], out_dir: Path, split: str, max_count: int,
                image_size: int | None = None) -> dict:
    """Write (first_path, future_path, offset, label, scene) tuples as `<split>-NNNNNN.tar`; returns its index entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=max_count, verbose=0) as sink:
        for first, future, offset, label, scene in pairs:
            sink.write({"__key__": f"s{scene:07d}_{first.stem}_o{offset}",
                        "first.jpg": _jpeg_bytes(first, image_size), "future.jpg": _jpeg_bytes(future, image_size),
                        "json": json.dumps({"offset": offset, "label": label, "scene": scene}).encode()})
            count += 1
    shards = sorted(p.name for p in out_dir.glob(f"{split}-*.tar"))
    return {"shards": shards, "samples": count}


def read_index(folder: str | Path) -> dict:
    index_path = Path(folder) / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"WebDataset index not found: {index_path}. Write shards with "
                                f"`python laq/scripts/1_make_shards.py --src FRAMES --out {folder}`.")
    return json.loads(index_path.read_text())


def shard_paths(folder: str | Path, split: str) -> list[Path]:
    """The split's shard files from index.json, each resolved inside `folder`. Entries must be plain relative
    paths: WebDataset would run a `pipe:` entry as a shell command and fetch a URL, and `../` or an absolute path
    would read outside the shard folder, so those are refused, naming the entry."""
    root = Path(folder).resolve()
    index = read_index(folder)
    if split not in index or not index[split].get("shards"):
        raise FileNotFoundError(f"No '{split}' shards listed in {Path(folder) / 'index.json'}")
    paths = []
    for name in index[split]["shards"]:
        path = (root / str(name)).resolve()
        if ":" in str(name).split("/")[0] or Path(str(name)).is_absolute() or not path.is_relative_to(root):
            raise ValueError(f"{Path(folder) / 'index.json'}: shard entry {name!r} is not a path inside the shard "
                             f"folder (only relative file names are accepted; 'pipe:', URLs, absolute paths and ../ "
                             f"are refused)")
        if not path.is_file():
            raise FileNotFoundError(f"{Path(folder) / 'index.json'} lists {name}, but {path} does not exist")
        paths.append(path)
    return paths


def check_shards_per_rank(n_shards: int, world_size: int, workers: int, split: str = "train") -> None:
    """Every process and DataLoader worker needs at least one shard: with fewer, a rank whose workers get none loops
    on empty epochs while the others wait for it in the gradient all-reduce (a hang). Refused at start-up."""
    readers = world_size * max(1, workers)
    if n_shards < readers:
        raise ValueError(f"{n_shards} '{split}' shard(s) for {world_size} process(es) x {max(1, workers)} DataLoader "
                         f"worker(s) = {readers} readers: each reader needs at least one shard. Write more, smaller "
                         f"shards (1_make_shards.py --max_count), or lower data.num_workers.")


class _Decode:
    """Shard sample -> training dict, or SkippedSample for an undecodable frame (strict: BadSampleError)."""

    def __init__(self, image_size: int, strict: bool):
        self.image_size, self.policy = image_size, BadSamplePolicy(strict)

    def _image(self, data: bytes, where: str) -> torch.Tensor:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise BadSampleError(f"Could not decode image (corrupt or not an image?): {where}")
        if image.shape[:2] != (self.image_size, self.image_size):
            image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return image_to_tensor(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))

    def __call__(self, sample: dict):
        where = f"{sample.get('__url__', '?')}:{sample['__key__']}"
        try:
            meta = json.loads(sample["json"])
            first = self._image(sample["first.jpg"], where + "/first.jpg")
            future = self._image(sample["future.jpg"], where + "/future.jpg")
        except (BadSampleError, KeyError, json.JSONDecodeError) as exc:
            return self.policy.handle(where, exc)
        return {"first": first, "future": future, "offset": torch.tensor(int(meta["offset"])),
                "label": torch.tensor(int(meta.get("label", -1))), "scene": torch.tensor(int(meta.get("scene", -1)))}


def shard_dataset(folder: str | Path, split: str, image_size: int, shuffle_buffer: int, seed: int,
                  strict: bool = False, repeat: bool = True) -> wds.WebDataset:
    """An IterableDataset over the split's shards: shards split across ranks (split_by_node) and DataLoader
    workers (split_by_worker), shard order shuffled with `seed`, samples shuffled in a `shuffle_buffer` buffer.
    With repeat=True the stream never ends; the training loop takes a fixed number of batches per epoch so every
    rank runs the same number of steps even when the shards hold different counts."""
    urls = [str(path) for path in shard_paths(folder, split)]
    dataset = wds.WebDataset(urls, repeat=repeat, shardshuffle=len(urls) if shuffle_buffer else False,
                             nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker, seed=seed,
                             empty_check=False)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    return dataset.map(_Decode(image_size, strict))
