"""STKET's knowledge priors: counted from the training annotations, written to / read from TrainPrior.json.

Per object class k (index in the 37-entry list, person = 1), over the 26 predicate columns
attention [0:3] | spatial [3:9] | contacting [9:26]:
    initial  (37, 26): mean multi-hot relation vector of the objects of class k (co-occurrence statistics).
    specific (37, 17, 26): for each contacting relation c (category-local index, not_contacting = 8), the mean
        relation vector of a class-k object given that the class-k object of the video's previous annotated frame
        (at most MAX_GAP frames back, the rule STKET's temporal decoder uses to find a previous state) had c.
        Each (previous object with c, current object) pair of the same class counts once.
Rows never observed stay 0 (STKET's loader does the same).

JSON layout (that of STKET's data/TrainPrior.json, so the released file loads too):
    {"<k>": {"obj_cls_name": str, "c_rel_name": [str], "c_rel_idx": [int in 0..16],
             "initial_prior": [26 floats], "specific_prior": [[26 floats] for each c_rel_idx]}, ...}
STKET's countPrior.py silently writes `{}` when its annotation paths are wrong (STKET issue #1): here an empty
or malformed file is an error naming the file and what is wrong, and files are written atomically.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.classes import (NUM_ATTENTION, NUM_CONTACTING, NUM_OBJECT_CLASSES, NUM_PREDICATES, NUM_SPATIAL,
                                 default_class_lists)

log = logging.getLogger(__name__)
MAX_GAP = 2  # frames: an object's previous state is looked up at most this far back


class PriorFileError(ValueError):
    """TrainPrior.json is empty or malformed; the message names the file and the problem."""


def relation_vector(obj: dict) -> torch.Tensor:
    """(26,) float64 multi-hot of one annotated object (category-local index tensors, as ActionGenome gives)."""
    row = torch.zeros(NUM_PREDICATES, dtype=torch.float64)
    row[torch.as_tensor(obj["attention_relationship"], dtype=torch.long)] = 1.0
    row[NUM_ATTENTION + torch.as_tensor(obj["spatial_relationship"], dtype=torch.long)] = 1.0
    row[NUM_ATTENTION + NUM_SPATIAL + torch.as_tensor(obj["contacting_relationship"], dtype=torch.long)] = 1.0
    return row


def count_priors(annotations: Iterable[list]) -> dict[str, torch.Tensor]:
    """Priors of a set of videos. `annotations` yields one `gt_annotation` per video (ActionGenome's format:
    frames in order, each [{'person_bbox'}, {'class', ..._relationship}, ...]).

    Returns {"initial": (37, 26), "specific": (37, 17, 26), "objects": (37,), "transitions": (37, 17)} float64;
    the last two are the counts the means divide by."""
    initial_sum = torch.zeros(NUM_OBJECT_CLASSES, NUM_PREDICATES, dtype=torch.float64)
    objects = torch.zeros(NUM_OBJECT_CLASSES, dtype=torch.float64)
    specific_sum = torch.zeros(NUM_OBJECT_CLASSES, NUM_CONTACTING, NUM_PREDICATES, dtype=torch.float64)
    transitions = torch.zeros(NUM_OBJECT_CLASSES, NUM_CONTACTING, dtype=torch.float64)
    for annotation in annotations:
        last_seen: dict[int, tuple[int, list[dict]]] = {}  # class -> (frame, its objects in that frame)
        for frame, objects_of_frame in enumerate(annotation):
            by_class: dict[int, list[dict]] = {}
            for obj in objects_of_frame[1:]:
                by_class.setdefault(int(obj["class"]), []).append(obj)
            for cls, current in by_class.items():
                vectors = [relation_vector(o) for o in current]
                initial_sum[cls] += torch.stack(vectors).sum(0)
                objects[cls] += len(current)
                previous = last_seen.get(cls)
                if previous is not None and frame - previous[0] <= MAX_GAP:
                    for before in previous[1]:
                        for contact in torch.as_tensor(before["contacting_relationship"]).tolist():
                            for vector in vectors:
                                specific_sum[cls, contact] += vector
                                transitions[cls, contact] += 1
                last_seen[cls] = (frame, current)
    return {"initial": initial_sum / objects.clamp_min(1)[:, None],
            "specific": specific_sum / transitions.clamp_min(1)[:, :, None],
            "objects": objects, "transitions": transitions}


def to_json(priors: dict[str, torch.Tensor]) -> dict:
    """The TrainPrior.json dict: classes with at least one object, contact rows with at least one transition."""
    classes = default_class_lists()
    out = {}
    for cls in range(1, NUM_OBJECT_CLASSES):
        if priors["objects"][cls] == 0:
            continue
        seen = [c for c in range(NUM_CONTACTING) if priors["transitions"][cls, c] > 0]
        out[str(cls)] = {"obj_cls_name": classes.objects[cls],
                         "c_rel_name": [classes.contacting[c] for c in seen], "c_rel_idx": seen,
                         "initial_prior": priors["initial"][cls].tolist(),
                         "specific_prior": [priors["specific"][cls, c].tolist() for c in seen]}
    return out


def write_prior_file(path: str | Path, priors: dict[str, torch.Tensor]) -> None:
    """Write TrainPrior.json atomically (temporary file in the same folder, then os.replace)."""
    path = Path(path)
    data = to_json(priors)
    if not data:
        raise PriorFileError(f"refusing to write {path}: the annotations hold no objects (no training videos?)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            json.dump(data, handle)
        os.replace(handle.name, path)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def _vector(values, where: str, path: Path) -> torch.Tensor:
    if not isinstance(values, list) or len(values) != NUM_PREDICATES or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise PriorFileError(f"{path}: {where} must be a list of {NUM_PREDICATES} finite numbers")
    return torch.tensor(values, dtype=torch.float32)


def read_prior_file(path: str | Path) -> dict[str, torch.Tensor]:
    """TrainPrior.json -> {"initial": (37, 26), "specific": (37, 17, 26)} float32 (absent rows 0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STKET prior file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PriorFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PriorFileError(f"{path}: expected an object keyed by object class index, found {type(data).__name__}")
    if not data:
        raise PriorFileError(f"{path}: holds no object classes ({{}}): STKET's countPrior.py writes this when its "
                             "annotation paths are wrong. Delete it to have it recomputed, or run "
                             "python -m vidsgg.scripts.compute_priors -data_path DIR -out FILE")
    initial = torch.zeros(NUM_OBJECT_CLASSES, NUM_PREDICATES)
    specific = torch.zeros(NUM_OBJECT_CLASSES, NUM_CONTACTING, NUM_PREDICATES)
    for key, entry in data.items():
        if not key.isdigit() or not 1 <= int(key) < NUM_OBJECT_CLASSES:
            raise PriorFileError(f"{path}: key {key!r} is not an object class index in 1..{NUM_OBJECT_CLASSES - 1}")
        missing = [f for f in ("c_rel_idx", "initial_prior", "specific_prior") if not isinstance(entry, dict)
                   or f not in entry]
        if missing:
            raise PriorFileError(f"{path}: class {key} has no {missing}")
        cls, rows, contacts = int(key), entry["specific_prior"], entry["c_rel_idx"]
        initial[cls] = _vector(entry["initial_prior"], f"class {key} initial_prior", path)
        if not isinstance(contacts, list) or not isinstance(rows, list) or len(contacts) != len(rows):
            raise PriorFileError(f"{path}: class {key}: c_rel_idx and specific_prior must be lists of the same "
                                 f"length (one prior row per contacting relation)")
        for contact, row in zip(contacts, rows):
            if not isinstance(contact, int) or not 0 <= contact < NUM_CONTACTING:
                raise PriorFileError(f"{path}: class {key}: c_rel_idx {contact!r} is not in 0..{NUM_CONTACTING - 1}")
            specific[cls, contact] = _vector(row, f"class {key} specific_prior row of contact {contact}", path)
    return {"initial": initial, "specific": specific}


def load_or_compute_priors(path: Path, train_set=None, data_path: str = "", datasize: str = "large",
                           mode: str = "predcls") -> dict[str, torch.Tensor]:
    """Priors from `path`; when it is missing, count them on the training set (read from `data_path` when
    `train_set` is None), write them to `path` and log that."""
    if path.is_file():
        log.info("STKET priors from %s", path)
        return read_prior_file(path)
    if train_set is None:
        train_set = ActionGenome(data_path, "train", mode, datasize)
    counts = count_priors(train_set[i]["gt_annotation"] for i in range(len(train_set)))
    try:
        write_prior_file(path, counts)
        # A warning: a file appears in the data folder, and a wrong path would silently get fresh priors.
        log.warning("STKET priors: %s was missing; computed from %d training videos and written there.", path,
                 len(train_set))
    except OSError as exc:
        log.warning("STKET priors: %s was missing; computed from %d training videos but could not write it (%s).",
                    path, len(train_set), exc)
    return {"initial": counts["initial"].float(), "specific": counts["specific"].float()}
