"""The EASG dataset in the layout m3sgg's `EASG(split, datasize, data_path)` reads.

Layout under `data_path`:
    EASG/generation/annts_in_new_format/objects.txt   one object class per line (the label space of the objects)
    EASG_unict_master_final.json                     {clip_id: {"split": "train"|"val", "W": int, "H": int,
                                                       "graphs": [{"graph_uid": str,
                                                                   "triplets": [[n1, edge, n2], ...],
                                                                   "groundings": {"pre"|"pnr"|"post":
                                                                       {object: {"left", "top", "width",
                                                                                 "height"} px}}}]}}
    features_verb.pt                                 {"<graph_uid>_<clip_id>": float tensor (Dv,)} (SlowFast
                                                       clip features, Dv = 2304 in the release)
    frames/<graph_uid>/<clip_id>_<pre|pnr|post>.jpg  the three key frames of each graph

Reading rules (as the reference loader):
  * A triplet ["CW", "verb", v] names the graph's verb; any other [v, e, o] is an edge e from the verb to object
    o (":N" instance suffixes are dropped). Triplets whose object is not in objects.txt are ignored.
  * Verb and edge classes are listed in order of first appearance over the whole JSON (both splits), so the
    indices are the reference's; objects are 0-based indices into objects.txt.
  * A frame holds the grounded objects that have at least one edge; frames without one are dropped.
  * The frames of a clip's graphs are concatenated in order; a new item starts once an item holds ≥ 100 frames.
  * split 'train' reads the JSON's "train" clips, 'test' its "val" clips.
  * -datasize: large = every clip; small = the first 200 clips by id; mini = the first 80,000 frames.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

OBJECTS_FILE = Path("EASG/generation/annts_in_new_format/objects.txt")
ANNOTATION_FILE = Path("EASG_unict_master_final.json")
FEATURES_FILE = Path("features_verb.pt")
FRAME_TYPES = ("pre", "pnr", "post")
SPLITS = {"train": "train", "test": "val"}
DATASIZES = ("mini", "small", "large")
MAX_ITEM_FRAMES = 100   # the reference starts a new item once one holds this many frames
SMALL_CLIPS = 200
MINI_FRAMES = 80_000


class EASGAnnotationError(ValueError):
    """An EASG file is missing or malformed; the message names the file and the key."""


@dataclass
class Vocabulary:
    objects: list[str]   # objects.txt, without a background entry
    verbs: list[str]
    edges: list[str]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise EASGAnnotationError(f"EASG file not found: {path} (is -data_path the EASG root?)")
    return path


def _object_name(node: str) -> str:
    return node.split(":")[0] if ":" in node else node


def read_objects(root: Path) -> list[str]:
    path = _require(root / OBJECTS_FILE)
    names = [line.rstrip("\n") for line in path.read_text(encoding="utf8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise EASGAnnotationError(f"{path}: no object classes")
    return names


def read_annotations(root: Path) -> dict:
    path = _require(root / ANNOTATION_FILE)
    with open(path, encoding="utf8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise EASGAnnotationError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise EASGAnnotationError(f"{path}: expected a dict keyed by clip id, found {type(data).__name__}")
    for clip_id, clip in data.items():
        missing = [k for k in ("split", "W", "H", "graphs") if not isinstance(clip, dict) or k not in clip]
        if missing:
            raise EASGAnnotationError(f"{path}: clip {clip_id!r} has no {missing}")
        for index, graph in enumerate(clip["graphs"]):
            missing = [k for k in ("graph_uid", "triplets", "groundings") if k not in graph]
            if missing:
                raise EASGAnnotationError(f"{path}: clip {clip_id!r}, graph {index} has no {missing}")
    return data


def build_vocabulary(objects: list[str], annotations: dict) -> Vocabulary:
    """Verbs and edges in order of first appearance over all clips (the reference's class indices)."""
    known, verbs, edges = set(objects), [], []
    for clip in annotations.values():
        for graph in clip["graphs"]:
            for n1, edge, n2 in graph["triplets"]:
                if n1 == "CW":
                    if n2 not in verbs:
                        verbs.append(n2)
                elif _object_name(n2) in known and edge not in edges:
                    edges.append(edge)
    return Vocabulary(list(objects), verbs, edges)


def read_vocabulary(data_path: str | Path) -> tuple[Vocabulary, int]:
    """(class lists, verb feature width Dv) of the EASG at `data_path`, for building a model."""
    root = Path(data_path)
    vocabulary = build_vocabulary(read_objects(root), read_annotations(root))
    features = load_verb_features(root)
    if not features:
        raise EASGAnnotationError(f"{root / FEATURES_FILE}: holds no features")
    return vocabulary, int(next(iter(features.values())).numel())


def load_verb_features(root: Path) -> dict:
    path = _require(root / FEATURES_FILE)
    features = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(features, dict):
        raise EASGAnnotationError(f"{path}: expected a dict of tensors keyed '<graph_uid>_<clip_id>'")
    return features


def verb_feature(features: dict, graph_uid: str, clip_id: str, index: int, path: Path) -> torch.Tensor:
    """The clip feature of a graph: key '<graph_uid>_<clip_id>' (the release) or m3sgg's
    '<clip_id>_graph_<index>_<clip_id>'."""
    for key in (f"{graph_uid}_{clip_id}", f"{clip_id}_graph_{index}_{clip_id}"):
        if key in features:
            return torch.as_tensor(features[key], dtype=torch.float32).reshape(-1)
    raise EASGAnnotationError(f"{path}: no verb feature for graph {graph_uid!r} of clip {clip_id!r} "
                              f"(tried keys '{graph_uid}_{clip_id}' and '{clip_id}_graph_{index}_{clip_id}')")


class EASG(Dataset):
    """One item per clip (or per ≤ ~100-frame piece of a long clip):

    {"video": str unique item id '<clip_id>' or '<clip_id>_part<k>' (the feature-cache key),
     "clip": str, "index": int, "num_edges": int E (edge classes of the dataset),
     "frame_names": list[str] T names '<graph_uid>/<clip_id>_<pre|pnr|post>.jpg',
     "frame_paths": list[str] T image files under frames/ (not read here),
     "image_size": (W, H) px from the JSON,
     "frame_graph": long (T,) graph (0..G-1) of each frame,
     "graphs": list of G dicts {"graph_uid": str, "verb": int, "frames": list[int]},
     "verb_features": float32 (G, Dv) one clip feature per graph,
     "gt_grounding": list of T frames, each a list of {"obj": int 0..O-1 (objects.txt index), "bbox": float32 (4,)
                     xyxy px, "verb": int 0..V-1, "edge": sorted list[int] in 0..E-1}}
    `mode` (easgcls | sgcls | edgecls) is recorded only: every mode reads the same annotations. Frame files are
    not checked here; a missing one raises BadSampleError (naming it) when its features are computed.
    """

    def __init__(self, data_path: str | Path, split: str = "train", mode: str = "easgcls", datasize: str = "large",
                 max_item_frames: int = MAX_ITEM_FRAMES, allow_outside_data: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test' (EASG's val), got {split!r}")
        if datasize not in DATASIZES:
            raise ValueError(f"-datasize must be one of {DATASIZES}, got {datasize!r}")
        self.root, self.split, self.mode = Path(data_path), split, mode
        self.allow_outside_data = allow_outside_data
        objects = read_objects(self.root)
        annotations = read_annotations(self.root)
        self.classes = build_vocabulary(objects, annotations)
        self._object_index = {name: i for i, name in enumerate(self.classes.objects)}
        features = load_verb_features(self.root)
        self.frames_root = self.root / "frames"
        clip_ids = [c for c in annotations if annotations[c]["split"] == SPLITS[split]]
        if datasize == "small":
            clip_ids = sorted(clip_ids)[:SMALL_CLIPS]
        self.items: list[dict] = []
        self.stats = {"graphs": 0, "graphs_without_objects": 0, "frames": 0}
        for clip_id in clip_ids:
            self._read_clip(clip_id, annotations[clip_id], features, max_item_frames)
            if datasize == "mini" and self.stats["frames"] >= MINI_FRAMES:
                break
        log.info("EASG %s/%s (%s): %d items, %d graphs, %d frames; %d graphs without grounded objects skipped; "
                 "%d objects, %d verbs, %d edges", self.root, split, datasize, len(self.items), self.stats["graphs"],
                 self.stats["frames"], self.stats["graphs_without_objects"], len(self.classes.objects),
                 len(self.classes.verbs), len(self.classes.edges))

    def _read_graph(self, graph: dict, clip_id: str) -> tuple[int | None, list[tuple[str, list[dict]]]]:
        """(verb index, [(frame type, groundings)]) of one graph; frames without a grounded object are dropped."""
        verb, obj_edges = None, {}
        for n1, edge, n2 in graph["triplets"]:
            if n1 == "CW":
                verb = n2
            elif _object_name(n2) in self._object_index:
                edges = obj_edges.setdefault(_object_name(n2), [])
                if edge not in edges:
                    edges.append(edge)
        frames = []
        if verb is None:
            if obj_edges:
                raise EASGAnnotationError(f"{self.root / ANNOTATION_FILE}: clip {clip_id!r}, graph "
                                          f"{graph['graph_uid']!r} has edges but no ['CW', 'verb', ...] triplet")
            return None, frames
        verb_index = self.classes.verbs.index(verb)
        for frame_type in FRAME_TYPES:
            grounded = []
            for name, box in graph["groundings"].get(frame_type, {}).items():
                if name not in obj_edges:
                    continue  # a grounding without an edge in this graph: ignored, as the reference
                missing = [k for k in ("left", "top", "width", "height") if k not in box]
                if missing:
                    where = f"clip {clip_id!r}, graph {graph['graph_uid']!r}, {frame_type} grounding {name!r}"
                    raise EASGAnnotationError(f"{self.root / ANNOTATION_FILE}: {where} has no {missing}")
                x, y, w, h = (float(box[k]) for k in ("left", "top", "width", "height"))
                grounded.append({"obj": self._object_index[name], "bbox": np.array([x, y, x + w, y + h], np.float32),
                                 "verb": verb_index,
                                 "edge": sorted(self.classes.edges.index(e) for e in obj_edges[name])})
            if grounded:
                frames.append((frame_type, grounded))
        return verb_index, frames

    def _read_clip(self, clip_id: str, clip: dict, features: dict, max_item_frames: int) -> None:
        size = (float(clip["W"]), float(clip["H"]))
        item = self._new_item(clip_id, size)
        part = 0
        for index, graph in enumerate(clip["graphs"]):
            verb, frames = self._read_graph(graph, clip_id)
            if not frames:
                self.stats["graphs_without_objects"] += 1
                continue
            uid = graph["graph_uid"]
            feature = verb_feature(features, uid, clip_id, index, self.root / FEATURES_FILE)
            g = len(item["graphs"])
            item["graphs"].append({"graph_uid": uid, "verb": verb, "frames": []})
            item["verb_features"].append(feature)
            for frame_type, grounded in frames:
                name = f"{uid}/{clip_id}_{frame_type}.jpg"
                if not self.allow_outside_data and (PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts):
                    raise EASGAnnotationError(f"{self.root / ANNOTATION_FILE}: clip {clip_id!r}, graph {uid!r}: the "
                                              f"frame {name!r} points outside the data folder; pass "
                                              "-allow_outside_data True if the frames really live there")
                item["graphs"][g]["frames"].append(len(item["frame_names"]))
                item["frame_names"].append(name)
                item["frame_graph"].append(g)
                item["gt_grounding"].append(grounded)
            self.stats["graphs"] += 1
            self.stats["frames"] += len(frames)
            if len(item["frame_names"]) >= max_item_frames:
                self._close(item, part)
                part += 1
                item = self._new_item(clip_id, size)
        if item["frame_names"]:
            self._close(item, part)

    @staticmethod
    def _new_item(clip_id: str, size: tuple[float, float]) -> dict:
        return {"clip": clip_id, "image_size": size, "graphs": [], "verb_features": [], "frame_names": [],
                "frame_graph": [], "gt_grounding": []}

    def _close(self, item: dict, part: int) -> None:
        item["video"] = item["clip"] if part == 0 else f"{item['clip']}_part{part}"
        item["verb_features"] = torch.stack(item["verb_features"])
        item["frame_graph"] = torch.tensor(item["frame_graph"], dtype=torch.long)
        self.items.append(item)
        if part == 1:  # the clip has several pieces: its first one gets an explicit name too
            first = next(i for i in reversed(self.items[:-1]) if i["clip"] == item["clip"])
            first["video"] = f"{item['clip']}_part0"

    def __len__(self) -> int:
        return len(self.items)

    def evaluation_units(self, max_videos: int = 0) -> tuple[str, int]:
        """("graphs", how many graphs the evaluator scores in the first `max_videos` items (all when 0))."""
        items = self.items if max_videos <= 0 else self.items[:max_videos]
        return "graphs", sum(len(item["graphs"]) for item in items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {**item, "index": index, "num_edges": len(self.classes.edges), "frame_names": list(item["frame_names"]),
                "frame_paths": [str(self.frames_root / name) for name in item["frame_names"]]}
