"""Write WebDataset tar shards of frame pairs from the scene layout or the rawframes layout.

    python laq/scripts/1_make_shards.py --src FRAMES [FRAMES ...] --out SHARDS [--offsets 30] [--mode pairs|scenes]
        [--val_split 0.1] [--seed 42] [--max_count 1000] [--image_size 0] [--filter label=3 ...]

--mode pairs writes every valid (scene, t, offset); --mode scenes writes one random pair per scene per pass
(--passes N, new pairs each pass, as the scene-level dataset does per epoch). The split is by scene. The pairs
are shuffled with --seed before writing, so a shard (and a reader's shuffle buffer) mixes many scenes instead of
holding a few scenes in a row. Writes
SHARDS/train-NNNNNN.tar, SHARDS/val-NNNNNN.tar and SHARDS/index.json (shard names, sample counts, labels), which
`data=laq_shards data.folder=SHARDS` (experiment=laq_full) reads.
"""
import argparse
import json
import logging
import random
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, from wherever it is run

from laq.data.datasets import PairDataset, SceneDataset
from laq.data.scenes import discover_scenes, label_vocabulary, split_scenes
from laq.data.shards import write_split


def pairs_of(dataset, passes: int, seed: int) -> list:
    """(first_path, future_path, offset, label, scene) for every pair the dataset would serve, shuffled with
    random.Random(seed)."""
    if isinstance(dataset, PairDataset):
        items = [dataset.pairs]
    else:
        items = []
        for epoch in range(passes):
            dataset.set_epoch(epoch)
            items.append([(i, *dataset.draw(i)) for i in range(len(dataset))])
    pairs = []
    for pass_items in items:
        for scene_index, start, offset in pass_items:
            scene = dataset.scenes[scene_index]
            label = dataset.labels.get(scene.label, -1) if scene.label is not None else -1
            pairs.append((scene.frames[start], scene.frames[start + offset], offset, label, scene_index))
    random.Random(seed).shuffle(pairs)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", nargs="+", required=True, help="frame roots (scene layout or rawframes)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--offsets", type=int, nargs="+", default=[30])
    parser.add_argument("--mode", choices=["pairs", "scenes"], default="pairs")
    parser.add_argument("--passes", type=int, default=1, help="--mode scenes: pairs per scene")
    parser.add_argument("--val_split", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42, help="split, scene-mode draws and the pair shuffle")
    parser.add_argument("--max_count", type=int, default=1000, help="samples per shard")
    parser.add_argument("--image_size", type=int, default=0, help="re-encode frames at this square size (0: copy)")
    parser.add_argument("--filter", nargs="*", default=[], help="CSV filters as column=YAML-value")
    parser.add_argument("--strict", action="store_true", help="raise on a bad scene instead of skipping it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    filters = {item.split("=", 1)[0]: yaml.safe_load(item.split("=", 1)[1]) for item in args.filter}
    scenes, report = discover_scenes(args.src, filters, min_frames=min(args.offsets) + 1, strict=args.strict)
    report.summary(logging.getLogger("make_shards"))
    labels = label_vocabulary(scenes)
    train, val = split_scenes(scenes, args.val_split, args.seed)
    out = Path(args.out)
    index = {"labels": labels, "offsets": args.offsets, "mode": args.mode, "sources": args.src}
    for split, split_scenes_ in (("train", train), ("val", val)):
        if not split_scenes_:
            continue
        dataset = (PairDataset(split_scenes_, args.offsets, 0, labels) if args.mode == "pairs"
                   else SceneDataset(split_scenes_, args.offsets, 0, labels, seed=args.seed))
        index[split] = write_split(pairs_of(dataset, args.passes, args.seed), out, split, args.max_count,
                                   args.image_size or None)
        print(f"{split}: {index[split]['samples']} pairs in {len(index[split]['shards'])} shards")
    (out / "index.json").write_text(json.dumps(index, indent=2))
    print(f"Wrote {out / 'index.json'}")


if __name__ == "__main__":
    main()
