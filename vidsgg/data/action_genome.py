"""The Action Genome dataset as the reference STTran loader reads it: one item is one video.

Layout under `data_path`:
    annotations/person_bbox.pkl                      {'<VIDEO>.mp4/<FRAME>.png': {'bbox': (N,4) xyxy, 'bbox_size': (w,h)}}
    annotations/object_bbox_and_relationship.pkl     {same keys: [ {'class', 'bbox' (x,y,w,h)|None, 'visible',
                                                       'attention_relationship', 'spatial_relationship',
                                                       'contacting_relationship', 'metadata': {'set': ...}} ]}
    annotations/object_bbox_and_relationship_filtersmall.pkl   optional; used for SGCLS/SGDET when present
    annotations/object_classes.txt, relationship_classes.txt
    frames/<VIDEO>.mp4/<FRAME>.png

Filtering (as the reference): keep a frame if its split (from the first object's metadata) is the requested one
and at least one object is visible; drop frames with no person box; keep only visible objects; keep videos
with more than 2 frames.

Malformed entries raise AnnotationError naming the file and the key: boxes that are not 4 finite numbers or have a
negative width/height, a visible object without an attention relation, a frame key that leaves the frames folder
(`../`, absolute; allowed with `allow_outside_data`), and, when a video is handed out, a frame whose image size
differs from its 'bbox_size'.
"""
from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vidsgg.data.classes import ClassLists, load_class_lists
from vidsgg.evaluation import frames_with_relations

log = logging.getLogger(__name__)

DATASIZES = ("mini", "small", "large")
MINI_FRAMES = 80_000   # mini: the first 80,000 frame keys (as the reference code)
SMALL_VIDEOS = 200     # small: the first 200 videos in name order (the "AG200" subset of m3sgg)
REQUIRED_OBJECT_KEYS = ("class", "bbox", "visible", "attention_relationship", "spatial_relationship",
                        "contacting_relationship", "metadata")


class AnnotationError(ValueError):
    """A pickle is missing or an entry is malformed; the message names the file and the key."""


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise AnnotationError(f"Action Genome annotation file not found: {path}")
    with open(path, "rb") as handle:
        try:
            data = pickle.load(handle, encoding="latin1")
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise AnnotationError(f"{path}: not a readable pickle ({exc})") from exc
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a dict keyed '<video>.mp4/<frame>.png', found {type(data).__name__}")
    return data


def _frame_number(key: str) -> int:
    return int(Path(key.rsplit("/", 1)[1]).stem)


def check_inside(key: str, path: Path, allow_outside: bool) -> None:
    """A frame key is a path below frames/: refuse '../' and absolute keys (they would read outside the data
    folder) unless the user allows it."""
    if not allow_outside and (PurePosixPath(key).is_absolute() or ".." in PurePosixPath(key).parts):
        raise AnnotationError(f"{path}: key {key!r} points outside the data folder; pass -allow_outside_data True "
                              "if the frames really live there")


def check_box(values, where: str, count: int = 4) -> np.ndarray:
    """`values` as a float32 array of `count` finite numbers, else AnnotationError naming `where`."""
    try:
        box = np.asarray(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: 'bbox' is not numeric ({values!r})") from exc
    if box.size != count:
        raise AnnotationError(f"{where}: 'bbox' must have {count} numbers, found {box.size} ({values!r})")
    if not np.isfinite(box).all():
        raise AnnotationError(f"{where}: 'bbox' holds NaN or inf ({values!r})")
    return box


class ActionGenome(Dataset):
    """One item per video (after filtering):

    {"video": str, "index": int,
     "frame_keys": list[str] ('<VIDEO>.mp4/<FRAME>.png', T entries in frame order),
     "frame_paths": list[str] (T image files, not read here), "image_size": (w, h) px from 'bbox_size',
     "gt_annotation": list of T frames, each [{'person_bbox': float32 (1,4) xyxy px},
                      {'class': int in 1..36, 'bbox': float32 (4,) xyxy px,
                       'attention_relationship': long (≥1,) in 0..2, 'spatial_relationship': long in 0..5,
                       'contacting_relationship': long in 0..16}, ...]}
    The relation tensors hold category-local indices, exactly what the STTran evaluator takes.
    """

    def __init__(self, data_path: str | Path, split: str = "train", mode: str = "predcls", datasize: str = "large",
                 filter_nonperson_box_frame: bool = True, mini_frames: int = MINI_FRAMES,
                 small_videos: int = SMALL_VIDEOS, allow_outside_data: bool = False):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if datasize not in DATASIZES:
            raise ValueError(f"-datasize must be one of {DATASIZES}, got {datasize!r}")
        self.root = Path(data_path)
        annotations = self.root / "annotations"
        if not annotations.is_dir():
            raise AnnotationError(f"Annotation folder not found: {annotations} (is -data_path the Action Genome root?)")
        self.classes: ClassLists = load_class_lists(annotations)
        self.split, self.mode = split, mode
        person_path = annotations / "person_bbox.pkl"
        object_path = annotations / "object_bbox_and_relationship.pkl"
        small_path = annotations / "object_bbox_and_relationship_filtersmall.pkl"
        if mode in ("sgcls", "sgdet") and small_path.is_file():
            object_path = small_path  # boxes with a short edge < 16 px removed, as the reference does
        self.object_file = object_path
        person_bbox = _load_pickle(person_path)
        object_bbox = _load_pickle(object_path)
        keys = list(person_bbox.keys())
        if datasize == "mini":
            keys = keys[:mini_frames]
        self.stats = {"frames_no_person": 0, "videos_too_short": 0, "frames_kept": 0}

        video_frames: dict[str, list[str]] = {}
        for key in keys:
            check_inside(key, person_path, allow_outside_data)
            if key not in object_bbox:
                raise AnnotationError(f"{object_path}: key {key!r} (present in {person_path}) is missing")
            objects = object_bbox[key]
            if not isinstance(objects, list) or not objects:
                raise AnnotationError(f"{object_path}: entry {key!r} must be a non-empty list of object dicts")
            for obj in objects:
                missing = [k for k in REQUIRED_OBJECT_KEYS if not isinstance(obj, dict) or k not in obj]
                if missing:
                    raise AnnotationError(f"{object_path}: entry {key!r} has an object without {missing}")
            if objects[0]["metadata"].get("set") != split or not any(o["visible"] for o in objects):
                continue
            video_frames.setdefault(key.rsplit("/", 1)[0], []).append(key)  # "<VIDEO>.mp4"

        names = sorted(video_frames)
        if datasize == "small":
            names = names[:small_videos]
        self.videos: list[dict] = []
        self._sizes_checked: set[int] = set()
        for name in names:
            frame_keys, annotation = [], []
            for key in sorted(video_frames[name], key=_frame_number):
                person = self._person_box(person_bbox[key], person_path, key)
                if filter_nonperson_box_frame and person.shape[0] == 0:
                    self.stats["frames_no_person"] += 1
                    continue
                frame_keys.append(key)
                annotation.append([{"person_bbox": person[:1]}]
                                  + [self._object(o, object_path, key) for o in object_bbox[key] if o["visible"]])
            if len(frame_keys) > 2:
                size = person_bbox[frame_keys[0]].get("bbox_size")
                if size is None or len(size) != 2:
                    raise AnnotationError(f"{person_path}: entry {frame_keys[0]!r} has no 'bbox_size' (w, h)")
                self.videos.append({"video": name, "frame_keys": frame_keys, "gt_annotation": annotation,
                                    "image_size": (float(size[0]), float(size[1])), "size_key": frame_keys[0]})
                self.stats["frames_kept"] += len(frame_keys)
            else:
                self.stats["videos_too_short"] += 1
        log.info("Action Genome %s/%s (%s, %s): %d videos, %d frames; dropped %d frames without a person box and "
                 "%d videos with ≤ 2 frames", self.root, split, datasize, object_path.name, len(self.videos),
                 self.stats["frames_kept"], self.stats["frames_no_person"], self.stats["videos_too_short"])

    @staticmethod
    def _person_box(entry, path: Path, key: str) -> np.ndarray:
        if not isinstance(entry, dict) or "bbox" not in entry:
            raise AnnotationError(f"{path}: entry {key!r} has no 'bbox'")
        try:
            box = np.asarray(entry["bbox"], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: entry {key!r} 'bbox' is not numeric") from exc
        if box.size == 0:
            return np.zeros((0, 4), np.float32)
        if box.ndim != 2 or box.shape[1] != 4:
            raise AnnotationError(f"{path}: entry {key!r} 'bbox' must be (N,4), found shape {box.shape}")
        if not np.isfinite(box[:1]).all():
            raise AnnotationError(f"{path}: entry {key!r} 'bbox' holds NaN or inf: {box[0].tolist()}")
        if (box[0, 2:] < box[0, :2]).any():
            raise AnnotationError(f"{path}: entry {key!r} 'bbox' has x2 < x1 or y2 < y1: {box[0].tolist()}")
        return box

    def _object(self, obj: dict, path: Path, key: str) -> dict:
        """A visible object converted as the reference loader does: class index, xyxy box, relation index tensors."""
        where = f"{path}: entry {key!r}, object {obj.get('class')!r}"
        if obj["bbox"] is None:
            raise AnnotationError(f"{where} is visible but has no bbox")
        if obj["class"] not in self.classes.objects[1:]:
            raise AnnotationError(f"{where}: unknown class (not in object_classes.txt)")
        x, y, w, h = check_box(obj["bbox"], where).tolist()
        if w < 0 or h < 0:
            raise AnnotationError(f"{where}: 'bbox' (x, y, w, h) has a negative width or height: {[x, y, w, h]}")
        if len(obj["attention_relationship"] or []) == 0:
            raise AnnotationError(f"{where} is visible but its 'attention_relationship' is empty (every visible "
                                  "object has exactly one in Action Genome)")
        out = {"class": self.classes.objects.index(obj["class"]),
               "bbox": np.array([x, y, x + w, y + h], dtype=np.float32)}
        for field, names in (("attention_relationship", self.classes.attention),
                             ("spatial_relationship", self.classes.spatial),
                             ("contacting_relationship", self.classes.contacting)):
            labels = obj[field] or []
            unknown = [r for r in labels if r not in names]
            if unknown:
                raise AnnotationError(f"{where}: {field} has unknown names {unknown}")
            out[field] = torch.tensor([names.index(r) for r in labels], dtype=torch.long)
        return out

    def __len__(self) -> int:
        return len(self.videos)

    def evaluation_units(self, max_videos: int = 0) -> tuple[str, int]:
        """("frames", how many frames the evaluator scores in the first `max_videos` videos (all when 0))."""
        videos = self.videos if max_videos <= 0 else self.videos[:max_videos]
        return "frames", sum(frames_with_relations(v["gt_annotation"]) for v in videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        frame_paths = [str(self.root / "frames" / k) for k in video["frame_keys"]]
        if index not in self._sizes_checked:  # once per video and process: reads only the image headers
            self._check_frame_sizes(video, frame_paths)
            self._sizes_checked.add(index)
        return {"video": video["video"], "index": index, "frame_keys": list(video["frame_keys"]),
                "frame_paths": frame_paths, "gt_annotation": video["gt_annotation"], "image_size": video["image_size"]}

    def _check_frame_sizes(self, video: dict, frame_paths: list[str]) -> None:
        """The boxes are in 'bbox_size' pixels: a frame of another size would silently misplace every RoI. A missing
        or undecodable file is left to the feature extraction (BadSampleError: skipped and counted)."""
        expected = tuple(int(round(v)) for v in video["image_size"])
        for key, path in zip(video["frame_keys"], frame_paths):
            try:
                with Image.open(path) as image:
                    size = image.size
            except (OSError, ValueError):
                continue
            if size != expected:
                raise AnnotationError(f"{path}: the frame is {size[0]}x{size[1]} px but "
                                      f"{self.root / 'annotations' / 'person_bbox.pkl'} entry {video['size_key']!r} "
                                      f"gives 'bbox_size' {expected[0]}x{expected[1]} (key {key!r})")


def collate_videos(samples: list[dict]) -> list[dict]:
    """Videos have different lengths: a batch is the list of video dicts."""
    return list(samples)
