"""Datasets and loaders from the Hydra `data` config: scene level, pair level or WebDataset shards, with the
debug subset, the validation split by scene and the bad-sample policy."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from common.data import collate_skipping
from common.sampler import ResumableSampler
from common.seed import loader_generator, worker_init_fn
from laq.data.datasets import PairDataset, SceneDataset, SubsetWithEpoch
from laq.data.scenes import discover_scenes, label_vocabulary, split_scenes
from laq.data.shards import read_index, shard_dataset

LAYOUTS = ("auto", "scenes", "rawframes", "webdataset")


@dataclass
class DataBundle:
    train: Any                 # map-style Dataset (with set_epoch) or an IterableDataset (webdataset)
    val: Dataset | Any | None
    train_size: int            # samples per epoch (all ranks together)
    val_size: int
    labels: dict[str, int]     # label string -> id ({} when the data has no labels)
    iterable: bool


def build_datasets(data_cfg, logger: logging.Logger | None = None) -> DataBundle:
    """data_cfg keys: folder, layout, image_size, offsets, pair_level, max_samples, val_split, sampling_seed,
    filters, strict, shuffle_buffer (webdataset) — see laq/config/data/*.yaml."""
    logger = logger or logging.getLogger(__name__)
    layout = str(data_cfg.layout)
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout={layout!r}; use one of {LAYOUTS}")
    offsets = [int(o) for o in data_cfg.offsets]
    if layout == "webdataset":
        index = read_index(data_cfg.folder)
        train = shard_dataset(data_cfg.folder, "train", data_cfg.image_size, data_cfg.shuffle_buffer,
                              data_cfg.sampling_seed, data_cfg.strict)
        has_val = bool(index.get("val", {}).get("shards"))
        val = shard_dataset(data_cfg.folder, "val", data_cfg.image_size, 0, data_cfg.sampling_seed,
                            data_cfg.strict, repeat=False) if has_val else None
        return DataBundle(train, val, int(index["train"]["samples"]),
                          int(index["val"]["samples"]) if has_val else 0, index.get("labels", {}), True)

    filters = OmegaConf.to_container(data_cfg.filters, resolve=True) if data_cfg.filters else {}
    folders = data_cfg.folder if isinstance(data_cfg.folder, str) else list(data_cfg.folder)
    scenes, report = discover_scenes(folders, filters, min_frames=min(offsets) + 1, strict=data_cfg.strict,
                                     layout=layout)
    report.summary(logger)
    if not scenes:
        raise ValueError(f"No usable scenes in {folders} (filters={filters}, offsets={offsets}).")
    labels = label_vocabulary(scenes)
    train_scenes, val_scenes = split_scenes(scenes, data_cfg.val_split, data_cfg.sampling_seed)

    def make(split_scenes_, seed):
        if data_cfg.pair_level:
            return PairDataset(split_scenes_, offsets, data_cfg.image_size, labels, data_cfg.strict)
        return SceneDataset(split_scenes_, offsets, data_cfg.image_size, labels, seed=seed, strict=data_cfg.strict)

    train = make(train_scenes, data_cfg.sampling_seed)
    val = make(val_scenes, data_cfg.sampling_seed + 1) if val_scenes else None
    if data_cfg.max_samples:
        train = SubsetWithEpoch(train, data_cfg.max_samples, data_cfg.sampling_seed)
    logger.info("Data: %d scenes (%d train / %d val), %d train samples per epoch, %s, offsets %s",
                len(scenes), len(train_scenes), len(val_scenes), len(train),
                "pair level" if data_cfg.pair_level else "scene level", offsets)
    return DataBundle(train, val, len(train), len(val) if val is not None else 0, labels, False)


def make_loader(dataset, data_cfg, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                train: bool = True, iterable: bool = False, workers: int | None = None):
    """(loader, sampler or None). Map-style: ResumableSampler (shuffled for train, exact mid-epoch resume);
    iterable (webdataset): the dataset splits itself across ranks and workers."""
    workers = int(data_cfg.num_workers if workers is None else workers)
    kwargs: dict[str, Any] = dict(batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping,
                                  pin_memory=bool(data_cfg.pin_memory), worker_init_fn=worker_init_fn,
                                  generator=loader_generator(seed))
    if workers > 0:
        kwargs.update(persistent_workers=False, prefetch_factor=int(data_cfg.prefetch_factor))
    if iterable:
        return DataLoader(dataset, **kwargs), None
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed,
                               drop_last=train)
    return DataLoader(dataset, sampler=sampler, drop_last=train, **kwargs), sampler
