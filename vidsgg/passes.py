"""Passes of a model over videos, shared by train.py, test.py and bench.py: the feature store they read, an Action
Genome sample turned into a model-ready entry, the loss of one video, an evaluation pass over a split and
TEMPURA's memory pass (vidsgg/tasks.py picks these or EASG's per -dataset)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

import torch

from common import dist
from common.data import BadSampleError
from vidsgg.data.entries import build_entry
from vidsgg.evaluation import CONSTRAINTS, SceneGraphEvaluator
from vidsgg.features.backbone import FeatureExtractor
from vidsgg.features.cache import FeatureStore

log = logging.getLogger(__name__)


def make_store(args: argparse.Namespace, device: torch.device) -> FeatureStore:
    """Frozen backbone + optional on-disk cache as the flags say."""
    extractor = FeatureExtractor(args.backbone_depth, args.backbone_weights, args.image_size, args.max_size).to(device)
    cache_dir = args.cache_dir if args.cache_dir is not None else str(Path(args.data_path) / "feature_cache")
    return FeatureStore(extractor, None if cache_dir.lower() == "none" else cache_dir)


def load_detections(path: str | None) -> dict | None:
    """{frame key: {'boxes' (M,4) xyxy px, 'labels' (M,), 'scores' (M,)}} from a .pt file, or None."""
    if not path:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"-detections: file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def prepare_entry(sample: dict, mode: str, store: FeatureStore, device: torch.device, training: bool,
                  detections: dict | None = None) -> dict:
    """Sample of ActionGenome -> entry (vidsgg.data.entries) with features, on `device`."""
    frame_detections = None
    if mode == "sgdet":
        missing = [k for k in sample["frame_keys"] if k not in detections]
        if missing:
            raise KeyError(f"-detections has no entry for frame {missing[0]!r}")
        frame_detections = [detections[k] for k in sample["frame_keys"]]
    entry = build_entry(sample["gt_annotation"], mode, frame_detections, training=training)
    entry["features"], entry["union_feat"] = store.get(sample, entry)
    entry = {k: v.to(device) if torch.is_tensor(v) else v for k, v in entry.items()}
    entry["image_size"] = sample["image_size"]
    return entry


def video_loss(model: torch.nn.Module, entry: dict, bce: bool) -> tuple[torch.Tensor, dict]:
    """Summed loss of one video and its named parts (detached floats for logging)."""
    pred = model(entry)
    losses = dist.unwrap(model).compute_losses(pred, entry, bce)
    return sum(losses.values()), {k: float(v.detach()) for k, v in losses.items()}


def empty_prediction(entry: dict) -> dict:
    """A prediction with no pairs (no detection in the whole video): its frames count with recall 0."""
    pred = {k: entry[k] for k in ("boxes", "labels", "scores", "im_idx", "pair_idx")}
    pred.update(pred_labels=entry["labels"], pred_scores=entry["scores"],
                attention_distribution=torch.zeros(0, 3), spatial_distribution=torch.zeros(0, 6),
                contacting_distribution=torch.zeros(0, 17))
    return pred


def evaluation_entries(dataset, prepare: Callable, mode: str, store: FeatureStore, device: torch.device,
                       detections: dict | None, max_videos: int, strict: bool):
    """Yield (sample, entry) for the first `max_videos` items of `dataset` (all when 0); an unreadable item is
    logged and skipped, or raises with `strict`."""
    count = len(dataset) if max_videos <= 0 else min(max_videos, len(dataset))
    for index in range(count):
        sample = dataset[index]
        try:
            entry = prepare(sample, mode, store, device, False, detections)
        except BadSampleError as exc:
            if strict:
                raise
            log.warning("Evaluation skips %s: %s", sample["video"], exc)
            continue
        yield sample, entry


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, store: FeatureStore, mode: str, device: torch.device,
             mean_recall: str = "per_predicate", detections: dict | None = None, max_videos: int = 0,
             strict: bool = False) -> dict:
    """R@K / mR@K under the three constraints: {"with/R@20": ..., "semi/R@20": ..., "no/mR@50": ...}."""
    was_training = model.training
    model.eval()
    evaluators = {c: SceneGraphEvaluator(mode, c, mean_recall=mean_recall) for c in CONSTRAINTS}
    for sample, entry in evaluation_entries(dataset, prepare_entry, mode, store, device, detections, max_videos,
                                            strict):
        pred = model(entry) if len(entry["pair_idx"]) else empty_prediction(entry)
        for evaluator in evaluators.values():
            evaluator.evaluate_scene_graph(sample["gt_annotation"], pred)
    model.train(was_training)
    results = {}
    for constraint, evaluator in evaluators.items():
        for key, value in evaluator.summary().items():
            results[f"{constraint}/{key}"] = value
    return results


@torch.no_grad()
def memory_pass(model: torch.nn.Module, dataset, store: FeatureStore, mode: str, device: torch.device,
                rank: int = 0, world_size: int = 1, detections: dict | None = None) -> None:
    """TEMPURA: rebuild the class prototypes from this epoch's embeddings (each rank its share of the training
    videos, summed over ranks)."""
    was_training = model.training
    model.eval()
    accumulators = model.memory_accumulators()
    for index in range(rank, len(dataset), world_size):
        try:
            entry = prepare_entry(dataset[index], mode, store, device, training=True, detections=detections)
        except BadSampleError:
            continue
        if entry["has_gt"].any():
            model.accumulate_memory(model(entry), entry, accumulators)
    for sums, weights in accumulators.values():
        dist.all_reduce_sum_(sums)
        dist.all_reduce_sum_(weights)
    model.set_memory(accumulators)
    model.train(was_training)


def first_good_entry(task, dataset, mode: str, store: FeatureStore, device: torch.device,
                     detections: dict | None) -> dict:
    """A stand-in for a bad video when no good one was seen yet in this run (weight 0, keeps DDP in step).
    `task`: a vidsgg.tasks.Task."""
    for index in range(len(dataset)):
        try:
            return task.prepare_entry(dataset[index], mode, store, device, True, detections)
        except BadSampleError:
            continue
    raise BadSampleError(f"No readable video in the training set of {dataset.root}")


def planned_steps(videos_per_rank: Callable[[int], int], args: argparse.Namespace) -> int:
    """Optimizer steps of the whole run (for the schedules): per epoch ceil(ceil(videos / batch) / accumulation),
    where an epoch's video count may change with the curriculum; capped by -stage1/2_iterations."""
    per_epoch = [-(-videos_per_rank(epoch) // args.batch_size) for epoch in range(args.epochs)]
    total = sum(-(-n // args.accumulate_grad_batches) for n in per_epoch)
    return min(total, args.max_steps) if args.max_steps else total


def trainable_names(model: torch.nn.Module) -> tuple[str, ...]:
    return tuple(name for name, p in model.named_parameters() if p.requires_grad)
