"""Label frame pairs with latent action ids from a trained LAQ checkpoint, writing jsonl.

    # frame folders (scene layout or rawframes): one row per (scene, t), future = t + offset
    python laq/scripts/3_label_latent_actions.py --ckpt RUN/checkpoints/last.pt --folders FRAMES --offset 30 \
        --out labels.jsonl [--stride 1] [--batch_size 32] [--device cpu]
    # LAPA-style jsonl (each line has "image": a frame path, plus any other fields, which are kept)
    python laq/scripts/3_label_latent_actions.py --ckpt last.pt --jsonl in.jsonl --offset 30 --out out.jsonl
    # LAPA's released weights (laq_openx.pt) or a LAPA training file, with LAPA's constructor arguments
    # (default: its train_sthv2.py sizes; --lapa_kwargs dim=1024 heads=16 code_seq_len=4 ... to change them)
    python laq/scripts/3_label_latent_actions.py --lapa_checkpoint laq_openx.pt --folders FRAMES --offset 30 \
        --out labels.jsonl

Each output row carries "codes" (list of L ints), "delta" (the same as strings, LAPA's field) and
"latent_action" (one int in [0, K^L)). As LAPA's inference, the future frame is clamped to the clip's last frame
(such rows get "clamped": true); with --no_clamp those pairs are left out instead.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, from wherever it is run

from common.data import BadSampleError, frame_number, sorted_frames
from laq.data.scenes import discover_scenes
from laq.inference import codes_to_action_id, latent_actions, load_frame, load_model
from laq.lapa import LAPA_TRAIN_STHV2, load_lapa


def pairs_from_folders(folders: list[str], offset: int, stride: int, clamp: bool):
    scenes, report = discover_scenes(folders, min_frames=2)
    for where, reason in report.skipped:
        print(f"warning: skipped {where}: {reason}", file=sys.stderr)
    for scene in scenes:
        n = len(scene.frames)
        for t in range(0, n, stride):
            future = t + offset
            if future >= n and not clamp:
                continue
            if t == n - 1:
                continue  # no later frame at all
            yield {"scene": str(scene.folder), "image": str(scene.frames[t]),
                   "future_image": str(scene.frames[min(future, n - 1)]), "offset": min(future, n - 1) - t,
                   "clamped": future >= n}


def pairs_from_jsonl(path: str, offset: int, clamp: bool):
    listings: dict[Path, list[Path]] = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if "image" not in record:
                raise KeyError(f"{path}:{line_number}: record has no 'image' field")
            image = Path(record["image"])
            if image.parent not in listings:
                listings[image.parent] = sorted_frames(image.parent)
            frames = listings[image.parent]
            numbers = [frame_number(p) for p in frames]
            if frame_number(image) not in numbers:
                raise BadSampleError(f"{path}:{line_number}: frame {image} is not in its folder")
            t = numbers.index(frame_number(image))
            future = t + offset
            if future >= len(frames) and not clamp:
                continue
            future = min(future, len(frames) - 1)
            yield {**record, "future_image": str(frames[future]), "offset": future - t,
                   "clamped": t + offset >= len(frames)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--ckpt", help="a checkpoint of this project's training (its config is inside)")
    weights.add_argument("--lapa_checkpoint", help="a LAPA LAQ file (laq_openx.pt, results/vae.N.pt)")
    parser.add_argument("--lapa_kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"LAPA constructor arguments for --lapa_checkpoint (defaults: {LAPA_TRAIN_STHV2})")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folders", nargs="+", help="frame roots (scene layout or rawframes)")
    source.add_argument("--jsonl", help="LAPA-style jsonl with an 'image' path per line")
    parser.add_argument("--offset", type=int, default=30)
    parser.add_argument("--stride", type=int, default=1, help="--folders: label every stride-th frame")
    parser.add_argument("--no_clamp", action="store_true", help="skip pairs whose future frame is past the end")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.lapa_checkpoint:
        try:
            lapa_kwargs = {key: float(value) if "dropout" in key else int(value)
                           for key, value in (item.split("=", 1) for item in args.lapa_kwargs)}
        except ValueError:
            parser.error(f"--lapa_kwargs takes KEY=NUMBER items, got {args.lapa_kwargs}")
        model = load_lapa(args.lapa_checkpoint, **lapa_kwargs).to(args.device)
    else:
        model = load_model(args.ckpt, args.device)
    size, codebook_size = model.cfg.image_size, model.cfg.codebook_size
    rows = (pairs_from_folders(args.folders, args.offset, args.stride, not args.no_clamp) if args.folders
            else pairs_from_jsonl(args.jsonl, args.offset, not args.no_clamp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(args.out, "w") as out:
        def flush(batch):
            first = torch.stack([load_frame(r["image"], size) for r in batch])
            future = torch.stack([load_frame(r["future_image"], size) for r in batch])
            codes = latent_actions(model, first, future).cpu()
            ids = codes_to_action_id(codes, codebook_size)
            for row, code, action in zip(batch, codes.tolist(), ids.tolist()):
                out.write(json.dumps({**row, "codes": code, "delta": [str(c) for c in code],
                                      "latent_action": action}) + "\n")
            return len(batch)

        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == args.batch_size:
                written += flush(batch)
                batch = []
        if batch:
            written += flush(batch)
    print(f"Wrote {written} labelled pairs to {args.out}")


if __name__ == "__main__":
    main()
