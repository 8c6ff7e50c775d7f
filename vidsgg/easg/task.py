"""The hooks train.py / test.py call for `-dataset easg`: the dataset class, sample → entry with features, and
evaluation over a split (the reference's recall@K of (verb, object, edge) triplets)."""
from __future__ import annotations

import torch

from vidsgg.easg.dataset import EASG
from vidsgg.easg.entries import build_easg_entry
from vidsgg.easg.evaluation import EASGEvaluator
from vidsgg.passes import evaluation_entries
from vidsgg.features.cache import FeatureStore

Dataset = EASG


def prepare_entry(sample: dict, mode: str, store: FeatureStore, device: torch.device, training: bool,
                  detections: dict | None = None) -> dict:
    """EASG item -> entry (vidsgg.easg.entries) with RoI / union features from the shared store, on `device`.
    `training` is accepted for the loop's signature: EASG entries are the same in training and evaluation."""
    if detections is not None:
        raise ValueError("-detections does not apply to -dataset easg (its modes use the GT boxes)")
    entry = build_easg_entry(sample, sample["num_edges"])
    entry["features"], entry["union_feat"] = store.get(sample, entry)
    entry = {k: v.to(device) if torch.is_tensor(v) else v for k, v in entry.items()}
    entry["image_size"] = sample["image_size"]
    return entry


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: EASG, store: FeatureStore, mode: str, device: torch.device,
             mean_recall: str = "per_predicate", detections: dict | None = None, max_videos: int = 0,
             strict: bool = False) -> dict:
    """{"with/R@10", "with/R@20", "with/R@50", "with/mR@K", "no/R@K", "no/mR@K", ...} fractions over the graphs
    of the split (the first `max_videos` items when > 0)."""
    was_training = model.training
    model.eval()
    evaluator = EASGEvaluator(mode, len(dataset.classes.edges), mean_recall)
    for sample, entry in evaluation_entries(dataset, prepare_entry, mode, store, device, detections, max_videos,
                                            strict):
        evaluator.evaluate_video(sample, entry, model(entry))
    model.train(was_training)
    return evaluator.summary()
