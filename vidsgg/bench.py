"""vidsgg benchmarks (CPU, fp32, 2 threads, median of ≥ 5 timed runs after warm-up).

    python -m vidsgg.bench [--json OUT.json] [--quick]

Rows: evaluator frame-evaluations/s (all three constraints, synthetic frames with 1–5 objects, 20-frame videos);
STTran PredCLS training videos/s without the feature cache, the cache's speed-up, PredCLS training videos/s of
each model (STTran, TEMPURA, STKET, SceneLLM) with the cache, and paper-size parameter counts. The backbone
is the reference one (ResNet-101, frames resized to short side 600 / long side ≤ 1000) on 480×270 synthetic frames
(Action Genome's size), 3-frame videos; the STTran is reduced in width (d = 484) so its step is CPU-sized.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.bench import finish

TARGET_EVAL = 10_000.0
TARGET_CACHE_SPEEDUP = 5.0


def median_time(fn, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_video(rng: np.random.Generator, frames: int = 20):
    gt, boxes, labels, im_idx, pairs = [], [], [], [], []
    for t in range(frames):
        person = np.array([10.0, 10.0, 50.0, 90.0])
        frame = [{"person_bbox": person[None]}]
        human = len(boxes)
        boxes.append([t, *person])
        labels.append(1)
        for _ in range(int(rng.integers(1, 6))):
            xy = rng.uniform(0, 100, 2)
            box = np.array([xy[0], xy[1], xy[0] + 20, xy[1] + 20])
            cls = int(rng.integers(2, 37))
            frame.append({"class": cls, "bbox": box,
                          "attention_relationship": torch.tensor([int(rng.integers(3))]),
                          "spatial_relationship": torch.tensor(sorted(set(rng.integers(0, 6, 2).tolist()))),
                          "contacting_relationship": torch.tensor([int(rng.integers(17))])})
            pairs.append([human, len(boxes)])
            im_idx.append(t)
            boxes.append([t, *box])
            labels.append(cls)
        gt.append(frame)
    n = len(pairs)
    pred = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.ones(len(labels)), "im_idx": torch.tensor(im_idx), "pair_idx": torch.tensor(pairs),
            "attention_distribution": torch.randn(n, 3), "spatial_distribution": torch.rand(n, 6),
            "contacting_distribution": torch.rand(n, 17)}
    return gt, pred


def bench_evaluator(runs: int) -> dict:
    from vidsgg.evaluation import CONSTRAINTS, SceneGraphEvaluator, evaluate_video
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    videos = [synthetic_video(rng) for _ in range(25)]

    def once():
        evaluators = [SceneGraphEvaluator("predcls", c) for c in CONSTRAINTS]
        for gt, pred in videos:
            evaluate_video(evaluators, gt, pred)

    seconds = median_time(once, runs)
    cpu_start = time.process_time()
    once()
    cpu_seconds = time.process_time() - cpu_start
    frames = sum(len(gt) for gt, _ in videos) * len(CONSTRAINTS)
    return {"workload": "evaluator, 3 constraints, 1-5 objects/frame", "value": frames / seconds,
            "unit": "frame-evaluations/s", "target": TARGET_EVAL, "higher_is_better": True,
            "note": f"{len(videos)} videos x 20 frames x 3 constraints per run; "
                    f"{frames / cpu_seconds:.0f}/s per CPU-second of this process"}


MODEL_FLAGS = {  # each model as its training scripts run it (STKET: the script's prior flags; SceneLLM: stage2)
    "sttran": [],
    "tempura": ["-model", "tempura", "-num_mixtures", "4"],
    "stket": ["-model", "stket", "-use_spatial_prior", "-spatial_prior_loss", "-use_temporal_prior",
              "-temporal_prior_loss", "-bce_loss"],
    "scenellm": ["-model", "scenellm", "-scenellm_stage", "stage2"],
}


LAYERS = {"sttran": "1+3 layers", "tempura": "1+3 layers", "scenellm": "1+3 layers + 4-layer LM",
          "stket": "2+2+2 layers (encoder, decoder, ensemble)"}


def bench_training(runs: int, quick: bool) -> list[dict]:
    from vidsgg.data.action_genome import ActionGenome
    from vidsgg.passes import make_store, prepare_entry, video_loss
    from vidsgg.models.build import build_model
    from vidsgg.option_checks import parse_train_args
    from vidsgg.synth import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_dataset(root, videos=12, width=480, height=270, seed=0, test_fraction=0.0)
        flags = ["-data_path", str(root), "-backbone_depth", "101", "-image_size", "600", "-max_size", "1000",
                 "-proj_dim", "128", "-embed_dim", "50", "-hidden_dim", "512", "-num_heads", "4",
                 "-union_dim", "64", "-cache_dir", str(Path(tmp) / "cache")]
        dataset = ActionGenome(root, "train")
        samples = [dict(s, frame_keys=s["frame_keys"][:3], frame_paths=s["frame_paths"][:3],
                        gt_annotation=s["gt_annotation"][:3]) for s in (dataset[i] for i in range(len(dataset)))][:1]
        args = parse_train_args(flags)
        cached_store = make_store(args, torch.device("cpu"))
        args.cache_dir = "none"
        plain_store = make_store(args, torch.device("cpu"))

        def step(store, model, optimizer, bce):
            def run():
                for sample in samples:
                    entry = prepare_entry(sample, "predcls", store, torch.device("cpu"), True)
                    loss, _ = video_loss(model, entry, bce)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            return run

        speeds, sizes = {}, {}
        for name, extra in MODEL_FLAGS.items():
            args = parse_train_args(flags + extra)
            torch.manual_seed(0)
            model = build_model(args, cached_store.extractor.c4, cached_store.extractor.c3, None, dataset)
            groups = (model.parameter_groups(1e-5) if hasattr(model, "parameter_groups")
                      else [p for p in model.parameters() if p.requires_grad])
            optimizer = torch.optim.AdamW(groups, lr=1e-5)
            if name == "sttran":
                speeds["uncached"] = len(samples) / median_time(step(plain_store, model, optimizer, False), runs)
            speeds[name] = len(samples) / median_time(step(cached_store, model, optimizer, args.bce_loss), runs)
            sizes[name] = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    frames = sum(len(s["frame_keys"]) for s in samples) / len(samples)
    note = f"ResNet-101 @600 on 480x270 frames, {frames:.0f} frames/video, d=484"
    rows = [
        {"workload": "STTran PredCLS training, no feature cache", "value": speeds["uncached"], "unit": "videos/s",
         "target": None, "higher_is_better": True, "note": note + ", 1+3 layers"},
        {"workload": "feature cache speed-up (training)", "value": speeds["sttran"] / speeds["uncached"], "unit": "x",
         "target": TARGET_CACHE_SPEEDUP, "higher_is_better": True, "note": "cached / uncached STTran videos/s"},
    ]
    for name, extra in MODEL_FLAGS.items():
        rows.append({"workload": f"{name} PredCLS training, feature cache", "value": speeds[name],
                     "unit": "videos/s", "target": None, "higher_is_better": True,
                     "note": f"{note}, {LAYERS[name]}; {' '.join(extra) or '-model sttran'}; "
                             f"{sizes[name]:,} trained parameters"})
    return rows


def parameter_rows() -> list[dict]:
    """Paper-size parameter counts (meta device, backbone excluded)."""
    from vidsgg import summary
    import contextlib
    import io
    rows = []
    for model, extra in MODEL_FLAGS.items():
        with contextlib.redirect_stdout(io.StringIO()):
            total = summary.main(["-mode", "predcls", *(extra or ["-model", model])])
        rows.append({"workload": f"{model} parameters (paper size, PredCLS)", "value": float(total),
                     "unit": "parameters", "target": None, "higher_is_better": False,
                     "note": "python -m vidsgg.summary " + " ".join(extra or ["-model", model])
                             + "; frozen backbone excluded"})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument("--quick", action="store_true", help="accepted for make bench; the bench is already short")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    runs = 5
    rows = [bench_evaluator(runs)] + bench_training(runs, args.quick) + parameter_rows()
    for row in rows:
        row["project"] = "vidsgg"
    return finish(rows, args.json)


if __name__ == "__main__":
    main()
