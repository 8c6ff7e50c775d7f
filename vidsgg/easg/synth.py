"""Write a small synthetic EASG in the real on-disk layout (see vidsgg.easg.dataset), with graphs whose objects,
edges and verbs follow from what is drawn, so a trained model must beat a random one.

    python -m vidsgg.easg.synth --out DIR --clips N [--width 64 --height 48 --seed 0]

Each graph has a verb and 2–3 objects, each drawn in a colour fixed per class on a noisy grey frame:
  * the direct object ("dobj"), a tool/food class, near the centre;
  * a hand (left_hand bottom-left, right_hand bottom-right, both_hands bottom-centre) with edge "with",
    plus "in" when the verb is put/place;
  * sometimes a surface (table / wood) along the top, whose edge depends on the verb:
    "from" for pick/take, "on" for put/place, "in" otherwise.
The verb is carried by features_verb.pt: a fixed random prototype per verb plus noise. Frames pre/pnr/post
jitter the boxes by a few pixels; some graphs lack the post frame. To exercise the loader, some triplets name an
object outside objects.txt or carry an instance suffix (":1"), and some groundings have no edge (both ignored).
JPEG frames at the real names ('<graph_uid>/<clip_id>_<t>.jpg').
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from vidsgg.easg.dataset import ANNOTATION_FILE, FEATURES_FILE, OBJECTS_FILE

HANDS = {"left_hand": (0.05, 0.62, 0.35, 0.95), "right_hand": (0.65, 0.62, 0.95, 0.95),
         "both_hands": (0.3, 0.68, 0.7, 0.98)}  # fixed regions (fractions of W, H)
TOOLS = ["bowl", "cup", "knife", "onion", "drill"]
SURFACES = ["table", "wood"]
DISTRACTOR = "bag"  # drawn and grounded, but never in a triplet
COLOURS = {"left_hand": (80, 140, 230), "right_hand": (60, 100, 200), "both_hands": (120, 170, 250),
           "bowl": (255, 60, 0), "cup": (0, 200, 0), "knife": (220, 220, 220), "onion": (200, 0, 200),
           "drill": (0, 220, 255), "table": (30, 60, 110), "wood": (60, 120, 160), "bag": (20, 20, 20)}
OBJECTS = sorted(COLOURS)
VERBS = ["pick", "take", "put", "place", "cut", "wash", "open", "drill"]
EDGES = ["dobj", "with", "in", "on", "from"]
VERB_DIM = 32


def surface_edge(verb: str) -> str:
    return "from" if verb in ("pick", "take") else "on" if verb in ("put", "place") else "in"


def _box(rng: np.random.Generator, region: tuple[float, float, float, float], width: int, height: int,
         min_frac: float = 0.5) -> np.ndarray:
    """A random xyxy box inside `region` (fractions), at least `min_frac` of its size."""
    x0, y0, x1, y1 = region[0] * width, region[1] * height, region[2] * width, region[3] * height
    w = rng.uniform(min_frac, 1.0) * (x1 - x0)
    h = rng.uniform(min_frac, 1.0) * (y1 - y0)
    x = rng.uniform(x0, x1 - w)
    y = rng.uniform(y0, y1 - h)
    return np.array([x, y, x + w, y + h])


def make_graph(rng: np.random.Generator, width: int, height: int) -> tuple[str, dict[str, np.ndarray], list]:
    """(verb, {object: xyxy box}, triplets) of one graph."""
    verb = VERBS[rng.integers(len(VERBS))]
    tool = TOOLS[rng.integers(len(TOOLS))]
    hand = list(HANDS)[rng.integers(len(HANDS))]
    boxes = {tool: _box(rng, (0.3, 0.25, 0.7, 0.6), width, height), hand: _box(rng, HANDS[hand], width, height, 0.7)}
    suffix = ":1" if rng.random() < 0.2 else ""
    triplets = [["CW", "verb", verb], [verb, "dobj", tool + suffix], [verb, "with", hand]]
    if verb in ("put", "place"):
        triplets.append([verb, "in", hand])
    if rng.random() < 0.6:
        surface = SURFACES[rng.integers(len(SURFACES))]
        boxes[surface] = _box(rng, (0.0, 0.0, 1.0, 0.22), width, height, 0.6)
        triplets.append([verb, surface_edge(verb), surface])
    if rng.random() < 0.2:
        triplets.append([verb, "with", "spoon"])  # not in objects.txt: ignored by the loader
    if rng.random() < 0.3:
        boxes[DISTRACTOR] = _box(rng, (0.75, 0.25, 1.0, 0.55), width, height)
    return verb, boxes, triplets


def draw(boxes: dict[str, np.ndarray], width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    image = np.clip(rng.normal(128, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    for name, box in sorted(boxes.items(), key=lambda kv: kv[0] in HANDS):  # hands drawn last (on top)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), COLOURS[name][::-1], thickness=-1)  # RGB -> BGR
    return image


def write_dataset(root: str | Path, clips: int = 12, width: int = 64, height: int = 48, seed: int = 0,
                  val_fraction: float = 0.25) -> dict:
    """Write the layout under `root`; returns the annotation dict."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    prototypes = {v: torch.from_numpy(rng.normal(0, 1, VERB_DIM).astype(np.float32)) for v in VERBS}
    annotations, features = {}, {}
    num_val = max(1, int(round(clips * val_fraction)))
    for c in range(clips):
        clip_id = f"{rng.integers(16 ** 8):08x}-{c:04d}-clip"
        graphs = []
        for g in range(int(rng.integers(3, 6))):
            uid = f"{rng.integers(16 ** 8):08x}-{g:02d}"
            verb, boxes, triplets = make_graph(rng, width, height)
            groundings = {}
            for frame_type in ("pre", "pnr", "post"):
                if frame_type == "post" and rng.random() < 0.2:
                    continue  # no post frame for this graph
                jittered = {n: np.clip(b + rng.uniform(-2, 2, 4), 0, [width, height, width, height])
                            for n, b in boxes.items()}
                groundings[frame_type] = {n: {"left": float(b[0]), "top": float(b[1]), "width": float(b[2] - b[0]),
                                              "height": float(b[3] - b[1])} for n, b in jittered.items()}
                path = root / "frames" / uid / f"{clip_id}_{frame_type}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), draw(jittered, width, height, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
            graphs.append({"graph_uid": uid, "triplets": triplets, "groundings": groundings})
            noise = torch.from_numpy(rng.normal(0, 0.3, VERB_DIM).astype(np.float32))
            features[f"{uid}_{clip_id}"] = prototypes[verb] + noise
        annotations[clip_id] = {"split": "val" if c >= clips - num_val else "train", "W": width, "H": height,
                                "graphs": graphs}
    (root / ANNOTATION_FILE).write_text(json.dumps(annotations))
    torch.save(features, root / FEATURES_FILE)
    class_dir = root / OBJECTS_FILE.parent
    class_dir.mkdir(parents=True, exist_ok=True)
    (root / OBJECTS_FILE).write_text("".join(f"{n}\n" for n in OBJECTS))
    (class_dir / "verbs.txt").write_text("".join(f"{n}\n" for n in sorted(VERBS)))
    (class_dir / "relationships.txt").write_text("".join(f"{n}\n" for n in sorted(EDGES)))
    return annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="EASG root to write (EASG/, frames/, JSON, features)")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    annotations = write_dataset(args.out, args.clips, args.width, args.height, args.seed)
    graphs = sum(len(c["graphs"]) for c in annotations.values())
    print(f"Wrote {len(annotations)} clips, {graphs} graphs to {args.out}")


if __name__ == "__main__":
    main()
