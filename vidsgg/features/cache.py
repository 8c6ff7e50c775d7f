"""Per-video feature cache on disk, so epochs after the first skip the frozen backbone.

Layout: <cache_dir>/<extractor digest>/<VIDEO>.pt with {"boxes_digest", "object_features" (N,C4),
"union_features" (P,C3,7,7)} stored in `dtype` (float16 by default: half the disk, ~1e-3 relative error).
The folder name is a hash of the backbone architecture, its weights and the resize rule, so another backbone or
other weights never read these files; a video whose boxes or pairs changed (other annotations, other
detections) has a different boxes digest: the entry is reported stale and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from common.data import read_image
from vidsgg.features.backbone import FeatureExtractor

log = logging.getLogger(__name__)


def boxes_digest(entry: dict) -> str:
    """Hash of the boxes (with their frames) and pairs of an entry."""
    sha = hashlib.sha1(entry["boxes"].numpy().tobytes())
    sha.update(entry["pair_idx"].numpy().tobytes())
    return sha.hexdigest()


class FeatureStore:
    """`get(sample, entry)` -> (object_features (N,C4), union_features (P,C3,7,7)) float32 on the extractor's
    device, from the cache when it holds a fresh entry, else computed (and written when caching is on)."""

    def __init__(self, extractor: FeatureExtractor, cache_dir: str | Path | None = None,
                 dtype: torch.dtype = torch.float16):
        self.extractor, self.dtype = extractor, dtype
        self.folder = None
        self.hits = self.misses = self.stale = 0
        if cache_dir:
            digest = extractor.digest()
            self.folder = Path(cache_dir) / digest
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest = {"backbone": f"resnet{extractor.depth}", "weights": extractor.weights_name,
                        "image_size": extractor.image_size, "max_size": extractor.max_size, "digest": digest,
                        "dtype": str(dtype)}
            (self.folder / "manifest.json").write_text(json.dumps(manifest, indent=2))

    def _path(self, video: str) -> Path:
        return self.folder / f"{video}.pt"

    def compute(self, frame_paths: list[str], entry: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the backbone on the frames of one video (raises BadSampleError naming an unreadable frame)."""
        images = [read_image(path) for path in frame_paths]
        tensor, scale = self.extractor.prepare(images)
        device = tensor.device
        boxes = entry["boxes"].to(device)
        return self.extractor(tensor, boxes[:, 1:] * scale, boxes[:, 0].long(), entry["pair_idx"].to(device))

    def get(self, sample: dict, entry: dict) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.extractor.mean.device
        if self.folder is None:
            self.misses += 1
            return self.compute(sample["frame_paths"], entry)
        path, digest = self._path(sample["video"]), boxes_digest(entry)
        if path.is_file():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("boxes_digest") == digest:
                self.hits += 1
                return stored["object_features"].to(device).float(), stored["union_features"].to(device).float()
            self.stale += 1
            log.info("Feature cache entry %s is stale (boxes or pairs changed); recomputing.", path)
        self.misses += 1
        object_features, union_features = self.compute(sample["frame_paths"], entry)
        dtype = self.dtype
        largest = max((float(t.abs().max()) for t in (object_features, union_features) if t.numel()), default=0.0)
        if dtype.is_floating_point and largest > torch.finfo(dtype).max:
            # float16 tops out at 65504: random-init deep backbones exceed it and the features would become inf.
            dtype = torch.float32
            log.warning("Features of %s reach %.3g, beyond %s; cached in float32.", sample["video"], largest,
                        self.dtype)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"boxes_digest": digest, "object_features": object_features.to(dtype).cpu(),
                    "union_features": union_features.to(dtype).cpu()}, tmp)
        os.replace(tmp, path)  # atomic: two DDP ranks writing the same video never leave a torn file
        return object_features.to(dtype).float(), union_features.to(dtype).float()
