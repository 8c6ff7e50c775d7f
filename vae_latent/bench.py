"""Training throughput of the VAE and the share of step time spent waiting for data (CPU, fp32, 2 threads).

    python -m vae_latent.bench [--json OUT.json] [--quick]

Workloads: a train step (forward, backward, Adam) of the spec config at 256x256, batch 16, fed by the real
DataLoader (2 workers, JPEG frames in the SSv2 layout, resized to 256x256), which also gives the data-wait share;
the same for the small demo config; and the data pipeline alone. One spec step takes seconds on 2 CPU cores,
so that workload times 3 steps after 1 warm-up (not 5) to keep the whole bench under 2 minutes.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from common.bench import finish
from common.data import collate_skipping
from common.seed import worker_init_fn
from vae_latent.dataset_sthv2 import FrameDataset, discover_videos
from vae_latent.vae_config import SPEC_CONFIG, load_config
from vae_latent.vanilla_vae_model import build_model, vae_loss

DEMO_CONFIG = SPEC_CONFIG.with_name("config_vae_demo.yaml")
DATA_WAIT_TARGET_PCT = 5.0  # issue 9: data wait <= 5 % of step time with 2 workers


def write_frames(root: Path, videos: int, frames: int = 2, height: int = 240, width: int = 320) -> Path:
    """SSv2-like JPEG frames (240 px high, smooth content): root/frames/<id>/img_XXXXX.jpg."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for v in range(videos):
        folder = root / "frames" / str(v)
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            phase = rng.uniform(0, 6.28, size=3)
            image = np.stack([127 + 100 * np.sin(xs / (20 + 7 * c) + ys / 31 + phase[c] + t) for c in range(3)], -1)
            cv2.imwrite(str(folder / f"img_{t:05d}.jpg"), image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def make_loader(data_root: Path, image_size: int, batch_size: int, workers: int = 2) -> DataLoader:
    videos, _ = discover_videos(data_root)
    dataset = FrameDataset(videos, image_size, "one", seed=0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                      collate_fn=collate_skipping, worker_init_fn=worker_init_fn)  # workers end with each iterator


def time_training(config: dict, loader: DataLoader, warmup: int, timed: int) -> tuple[list[float], list[float]]:
    """Per timed step: (seconds for the whole step, seconds of it blocked on the loader)."""
    model = build_model(config["model_params"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["exp_params"]["LR"])
    kld_weight = config["exp_params"]["kld_weight"]
    step_s, wait_s = [], []
    batches = iter(())
    for step in range(warmup + timed):
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:  # a new epoch (the loader is small)
            batches = iter(loader)
            batch = next(batches)
        fetched = time.perf_counter()
        images = batch["image"]
        out = model(images)
        loss = vae_loss(out["recons"], images, out["mu"], out["log_var"], kld_weight)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["exp_params"]["max_grad_norm"])
        optimizer.step()
        if step >= warmup:
            step_s.append(time.perf_counter() - start)
            wait_s.append(fetched - start)
    del batches  # stop the workers before the frames folder goes away
    return step_s, wait_s


def time_pipeline(loader: DataLoader, batches: int) -> list[float]:
    """Seconds per batch of the loader alone (after its workers started)."""
    times, it = [], iter(loader)
    next(it)
    for _ in range(batches):
        start = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            it = iter(loader)
            batch = next(it)
        times.append(time.perf_counter() - start)
    del it
    return times


def row(workload: str, value: float, unit: str, target, higher: bool, note: str) -> dict:
    return {"project": "vae_latent", "workload": workload, "value": round(value, 3), "unit": unit, "target": target,
            "higher_is_better": higher, "note": note}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument("--quick", action="store_true", help="spec config at batch 4, fewer steps (smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    spec, demo = load_config(), load_config(DEMO_CONFIG)
    spec_batch = 4 if args.quick else spec["data_params"]["train_batch_size"]
    spec_warmup, spec_timed = 1, (2 if args.quick else 3)
    demo_batch = demo["data_params"]["train_batch_size"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vae_bench_") as tmp:
        data = write_frames(Path(tmp), videos=160)  # 10 spec batches: no epoch restart inside the timed steps
        loader = make_loader(data, 256, spec_batch)
        steps, waits = time_training(spec, loader, spec_warmup, spec_timed)
        step = statistics.median(steps)
        wait_pct = 100 * sum(waits) / sum(steps)
        rows.append(row(f"train step, spec config (63.0M params) 256x256, batch {spec_batch}", spec_batch / step,
                        "samples/s", None, True, f"median of {spec_timed} timed steps after {spec_warmup} warm-up "
                        f"(reduced from 5: {step:.1f} s per step); fp32, 2 threads, real DataLoader"))
        rows.append(row("data wait share of step time, spec config, 2 workers", wait_pct, "%", DATA_WAIT_TARGET_PCT,
                        False, f"time blocked on next(loader) / step time over the {spec_timed} timed steps"))
        demo_loader = make_loader(data, demo["model_params"]["image_size"], demo_batch)
        steps, waits = time_training(demo, demo_loader, 3, 5 if args.quick else 10)
        demo_params = sum(p.numel() for p in build_model(demo["model_params"]).parameters()) / 1e6
        side = demo["model_params"]["image_size"]
        rows.append(row(f"train step, demo config ({demo_params:.2f}M) {side}x{side}, batch {demo_batch}",
                        demo_batch / statistics.median(steps), "samples/s", None, True,
                        f"median of {len(steps)} timed steps after 3 warm-up; data wait "
                        f"{100 * sum(waits) / sum(steps):.1f} % of step time"))
        pipeline = time_pipeline(loader, 6 if args.quick else 12)
        rows.append(row(f"data pipeline alone, 320x240 JPEG -> 256x256, batch {spec_batch}, 2 workers",
                        spec_batch / statistics.median(pipeline), "samples/s", None, True,
                        f"median of {len(pipeline)} batches after the first"))
    finish(rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
