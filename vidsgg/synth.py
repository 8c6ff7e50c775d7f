"""Write a small synthetic Action Genome (frames + pickles + class files) whose relations follow from geometry
and appearance, so a model trained on it must beat a random one.

    python -m vidsgg.synth --out DIR --videos N [--width 128 --height 96 --seed 0]

Each video shows a person (a red body with a skin-coloured head) and 1–4 objects drawn as rectangles in a colour
fixed per class, moving linearly. Relations are computed from the boxes and classes:
  attention:  looking_at if the object centre is within 0.6·person height of the person centre,
              unsure if the object is small (short side < 10 px), else not_looking_at;
  spatial:    above / beneath from the vertical offset, in_front_of if the object covers > 30 % of itself over
              the person, on_the_side_of if the boxes do not overlap horizontally, behind if none of those hold;
  contacting: a class-specific contact (CONTACT_BY_CLASS) when the object overlaps the person, else
              not_contacting.
To exercise the loader's filtering, some objects are invisible (bbox None), some frames have no person box,
some videos have only 2 frames, and the split comes from each frame's metadata.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import cv2
import numpy as np

from vidsgg.data.classes import PREDICATE_FIXES, RAW_OBJECTS, RAW_PREDICATES, OBJECT_FIXES

OBJECTS = [OBJECT_FIXES.get(n, n) for n in RAW_OBJECTS]            # 36 names, person first
PREDICATES = [PREDICATE_FIXES.get(n, n) for n in RAW_PREDICATES]   # 26 names
# The classes that appear, their colour (BGR) and the contact they have when touching the person.
CONTACT_BY_CLASS = {"cup/glass/bottle": "holding", "chair": "sitting_on", "bag": "carrying", "laptop": "touching",
                    "clothes": "wearing", "food": "eating", "floor": "standing_on", "paper/notebook": "writing_on"}
COLOURS = {"cup/glass/bottle": (255, 80, 0), "chair": (0, 160, 0), "bag": (200, 0, 200), "laptop": (40, 40, 40),
           "clothes": (0, 200, 255), "food": (0, 90, 160), "floor": (150, 150, 0), "paper/notebook": (255, 255, 255)}


def relations(person: np.ndarray, box: np.ndarray, cls: str) -> tuple[list[str], list[str], list[str]]:
    """Attention, spatial and contacting names for an object box (xyxy) next to the person box (xyxy)."""
    ph = person[3] - person[1]
    pcx, pcy = (person[0] + person[2]) / 2, (person[1] + person[3]) / 2
    ocx, ocy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inter_w = max(0.0, min(person[2], box[2]) - max(person[0], box[0]))
    inter_h = max(0.0, min(person[3], box[3]) - max(person[1], box[1]))
    covered = inter_w * inter_h / max(1.0, (box[2] - box[0]) * (box[3] - box[1]))
    if min(box[2] - box[0], box[3] - box[1]) < 10:
        attention = "unsure"
    elif np.hypot(ocx - pcx, ocy - pcy) < 0.6 * ph:
        attention = "looking_at"
    else:
        attention = "not_looking_at"
    spatial = []
    if ocy < person[1] + 0.25 * ph:
        spatial.append("above")
    if ocy > person[3] - 0.25 * ph:
        spatial.append("beneath")
    if covered > 0.3:
        spatial.append("in_front_of")
    if inter_w == 0.0:
        spatial.append("on_the_side_of")
    if not spatial:
        spatial.append("behind")
    contacting = [CONTACT_BY_CLASS[cls]] if covered > 0.3 else ["not_contacting"]
    return [attention], spatial, contacting


def _draw(width: int, height: int, person: np.ndarray | None, objects: list[tuple[str, np.ndarray, bool]],
          rng: np.random.Generator) -> np.ndarray:
    image = np.full((height, width, 3), 110, np.uint8)
    image = np.clip(image.astype(np.int16) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    if person is not None:
        x0, y0, x1, y1 = person.astype(int)
        cv2.rectangle(image, (x0, y0 + (y1 - y0) // 4), (x1, y1), (30, 30, 200), -1)
        cv2.circle(image, ((x0 + x1) // 2, y0 + (y1 - y0) // 8), max(2, (y1 - y0) // 8), (140, 180, 230), -1)
    for cls, box, visible in objects:
        if visible:
            x0, y0, x1, y1 = box.astype(int)
            cv2.rectangle(image, (x0, y0), (x1, y1), COLOURS[cls], -1)
    return image


def write_dataset(out: str | Path, videos: int, width: int = 128, height: int = 96, seed: int = 0,
                  test_fraction: float = 0.3) -> dict:
    """Write the dataset; returns counts (frames, videos) useful for tests."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "object_classes.txt").write_text("\n".join(RAW_OBJECTS) + "\n")
    (out / "annotations" / "relationship_classes.txt").write_text("\n".join(RAW_PREDICATES) + "\n")
    classes = sorted(CONTACT_BY_CLASS)
    person_bbox, object_bbox = {}, {}
    for v in range(videos):
        name = f"SYN{v:04d}.mp4"
        split = "test" if rng.random() < test_fraction else "train"
        n_frames = 2 if rng.random() < 0.1 else int(rng.integers(3, 8))
        ph, pw = rng.uniform(0.45, 0.7) * height, rng.uniform(0.15, 0.25) * width
        p_start = np.array([rng.uniform(0, width - pw), rng.uniform(0, height - ph)])
        p_vel = rng.uniform(-3, 3, 2)
        tracks = []
        for _ in range(int(rng.integers(1, 5))):
            cls = classes[int(rng.integers(len(classes)))]
            size = np.array([rng.uniform(6, 0.35 * width), rng.uniform(6, 0.35 * height)])
            tracks.append((cls, size, np.array([rng.uniform(0, width), rng.uniform(0, height)]),
                           rng.uniform(-6, 6, 2)))
        frame_numbers = np.cumsum(rng.integers(5, 40, n_frames))
        folder = out / "frames" / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, number in enumerate(frame_numbers):
            key = f"{name}/{number:06d}.png"
            p_xy = np.clip(p_start + t * p_vel, 0, [width - pw, height - ph])
            person = np.array([p_xy[0], p_xy[1], p_xy[0] + pw, p_xy[1] + ph], np.float32)
            has_person = rng.random() > 0.08
            entries, drawn = [], []
            for cls, size, start, vel in tracks:
                xy = np.clip(start + t * vel, 0, [width - size[0], height - size[1]])
                box = np.array([xy[0], xy[1], xy[0] + size[0], xy[1] + size[1]], np.float32)
                visible = rng.random() > 0.1
                attention, spatial, contacting = relations(person, box, cls)
                entries.append({"class": cls, "bbox": (float(xy[0]), float(xy[1]), float(size[0]), float(size[1]))
                                if visible else None, "visible": visible,
                                "attention_relationship": attention if visible else None,
                                "spatial_relationship": spatial if visible else None,
                                "contacting_relationship": contacting if visible else None,
                                "metadata": {"tag": key, "set": split}})
                drawn.append((cls, box, visible))
            person_bbox[key] = {"bbox": person[None] if has_person else np.zeros((0, 4), np.float32),
                                "bbox_size": (width, height)}
            object_bbox[key] = entries
            image = _draw(width, height, person if has_person else None, drawn, rng)
            cv2.imwrite(str(folder / f"{number:06d}.png"), image)
    with open(out / "annotations" / "person_bbox.pkl", "wb") as handle:
        pickle.dump(person_bbox, handle)
    with open(out / "annotations" / "object_bbox_and_relationship.pkl", "wb") as handle:
        pickle.dump(object_bbox, handle)
    return {"frames": len(person_bbox), "videos": videos}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write (annotations/ and frames/)")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test_fraction", type=float, default=0.3)
    args = parser.parse_args(argv)
    counts = write_dataset(args.out, args.videos, args.width, args.height, args.seed, args.test_fraction)
    print(f"wrote {counts['videos']} videos, {counts['frames']} frames to {args.out}")


if __name__ == "__main__":
    main()
