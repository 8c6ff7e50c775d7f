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
from laq.data.shards import check_shards_per_rank, read_index, shard_dataset, shard_paths

LAYOUTS = ("auto", "scenes", "rawframes", "webdataset")


@dataclass
class DataBundle:
    train: Any                 # map-style Dataset (with set_epoch) or an IterableDataset (webdataset)
    val: Dataset | Any | None
    train_size: int            # samples per epoch (all ranks together)
    val_size: int
    labels: dict[str, int]     # label string -> id ({} when the data has no labels)
    iterable: bool


def build_datasets(data_cfg, logger: logging.Logger | None = None, world_size: int = 1) -> DataBundle:
    """data_cfg: the `data` group (laq.config_schema.DataConfig; laq/config/data/*.yaml). world_size: processes
    that will read the data (WebDataset mode refuses fewer shards than processes x workers)."""
    logger = logger or logging.getLogger(__name__)
    layout = str(data_cfg.layout)
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout={layout!r}; use one of {LAYOUTS}")
    offsets = [int(o) for o in data_cfg.offsets]
    if layout == "webdataset":
        index = read_index(data_cfg.folder)
        check_shards_per_rank(len(shard_paths(data_cfg.folder, "train")), world_size, int(data_cfg.num_workers))
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
                                     layout=layout, allow_outside_root=bool(data_cfg.allow_outside_root))
    report.summary(logger)
    if not scenes:
        raise ValueError(f"No usable scenes in {folders} (filters={filters}, offsets={offsets}).")
    labels = label_vocabulary(scenes)
    val_filters = OmegaConf.to_container(data_cfg.val_filters, resolve=True) if data_cfg.val_filters else {}
    train_scenes, val_scenes = split_scenes(scenes, data_cfg.val_split, data_cfg.sampling_seed,
                                            split_by=data_cfg.split_by, val_filters=val_filters)

    def make(split_scenes_, seed, draws=1, train=False):
        reverse, augment = bool(data_cfg.reverse) and train, bool(data_cfg.augment) and train
        if data_cfg.pair_level:
            return PairDataset(split_scenes_, offsets, data_cfg.image_size, labels, data_cfg.strict, reverse,
                               augment, seed)
        return SceneDataset(split_scenes_, offsets, data_cfg.image_size, labels, seed=seed, strict=data_cfg.strict,
                            draws=draws, reverse=reverse, augment=augment)

    train = make(train_scenes, data_cfg.sampling_seed, train=True)  # validation: forward in time, not augmented
    # Scene level: K fixed pairs per held-out scene, the same at every validation.
    val = make(val_scenes, data_cfg.sampling_seed + 1, int(data_cfg.val_draws_per_scene)) if val_scenes else None
    if data_cfg.max_samples:
        train = SubsetWithEpoch(train, data_cfg.max_samples, data_cfg.sampling_seed)
    logger.info("Data: %d scenes (%d train / %d val), %d train samples per epoch, %s, offsets %s",
                len(scenes), len(train_scenes), len(val_scenes), len(train),
                "pair level" if data_cfg.pair_level else "scene level", offsets)
    return DataBundle(train, val, len(train), len(val) if val is not None else 0, labels, False)


def make_loader(dataset, data_cfg, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                train: bool = True, iterable: bool = False, workers: int | None = None):
    """(loader, sampler or None). Map-style: ResumableSampler (exact mid-epoch resume; shuffled per epoch for
    train, in one fixed order for validation);
    iterable (webdataset): the dataset splits itself across ranks and workers."""
    workers = int(data_cfg.num_workers if workers is None else workers)
    kwargs: dict[str, Any] = dict(batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping,
                                  pin_memory=bool(data_cfg.pin_memory), worker_init_fn=worker_init_fn,
                                  generator=loader_generator(seed))
    if workers > 0:
        kwargs.update(persistent_workers=False, prefetch_factor=int(data_cfg.prefetch_factor))
    if iterable:
        return DataLoader(dataset, **kwargs), None
    # Validation is shuffled too, once, with a fixed seed (its epoch stays 0): batches then mix scenes, so "the codes
    # of another pair in the batch" (val/psnr_shuffled_codes) come from another scene, not from the neighbouring
    # frame of the same clip, and val_max_batches takes a sample of the whole set rather than its first scenes.
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                               drop_last=train)
    return DataLoader(dataset, sampler=sampler, drop_last=train, **kwargs), sampler
