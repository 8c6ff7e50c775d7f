"""Benchmarks: unet training steps (forward, backward, AdamW) at 256 and 512 px, and the renderer.

    python -m shadow.bench [--json OUT.json] [--quick]

Each workload runs in its own process (so the peak resident memory reported is that workload's), with
torch.set_num_threads(2) (--threads), fp32 on CPU (or the GPU when there is one), one warm-up and the median of >= 5 timed
runs. The full run takes about 4-5 minutes on a 2-core CPU (a 512 px step is ~30 s); --quick times the 512 px
step 3 times instead of 5 and renders 4 instead of 8 samples per timed renderer run.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch

from common.bench import finish

RENDER_TARGET = 4.0  # samples/s at 256², 32 light samples (issue 9)


def _train_step_worker(image_size: int, batch_size: int, runs: int, threads: int, queue) -> None:
    from shadow.flow import training_loss
    from shadow.models import build_model

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model("unet", image_size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    shape = (batch_size, 1, image_size, image_size)
    batch = {"shadow_map": torch.rand(shape), "mask": (torch.rand(shape) > 0.5).float(),
             "object_image": torch.rand(batch_size, 3, image_size, image_size) * 2 - 1,
             "theta": torch.full((batch_size,), 30.0), "phi": torch.zeros(batch_size),
             "size": torch.full((batch_size,), 2.0)}
    batch = {k: v.to(device) for k, v in batch.items()}

    def step():
        loss = training_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    queue.put({"seconds": statistics.median(times), "peak_mb": peak_mb, "device": device.type})


def _render_worker(batch: int, runs: int, queue) -> None:
    from shadow.synth import render

    render(30, 0, 2, image_size=256, seed=0)  # warm-up (camera look-up cache)
    rates = []
    for run in range(runs):
        start = time.perf_counter()
        for i in range(batch):
            index = run * batch + i
            render(5 + index % 40, (37 * index) % 360, 2 + index % 7, image_size=256, seed=index,
                   light_samples_count=32)
        rates.append(batch / (time.perf_counter() - start))
    queue.put({"rate": statistics.median(rates)})


def _in_process(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training-step workers")
    parser.add_argument("--workloads", nargs="+", choices=["train256", "train512", "render"],
                        default=["train256", "train512", "render"], help="which rows to measure")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = 5
    rows = []
    for image_size in (256, 512):
        if f"train{image_size}" not in args.workloads:
            continue
        step_runs = 3 if args.quick and image_size == 512 else runs  # a 512 px CPU step takes ~30 s
        result = _in_process(_train_step_worker, image_size, 1, step_runs, args.threads)
        where = "GPU" if result["device"] == "cuda" else f"CPU fp32, {args.threads} threads"
        rows.append({"project": "shadow", "workload": f"unet train step {image_size}px batch 1 ({where})",
                     "value": 1.0 / result["seconds"], "unit": "it/s", "target": None, "higher_is_better": True,
                     "note": f"median of {step_runs}; peak memory {result['peak_mb']:.0f} MB "
                             f"({'max allocated' if result['device'] == 'cuda' else 'process max RSS'})"})
    if "render" in args.workloads:
        render = _in_process(_render_worker, 4 if args.quick else 8, runs)
        rows.append({"project": "shadow", "workload": "renderer 256x256, 32 light samples", "value": render["rate"],
                     "unit": "samples/s", "target": RENDER_TARGET, "higher_is_better": True,
                     "note": f"median of {runs} runs; shadow mapping + analytic ray casting, numpy/OpenCV, 1 process"})

    return finish(rows, args.json)


if __name__ == "__main__":
    main()
