"""Benchmark of FoundationStereo (vits and vitl, the released architecture: max_disp 416, hidden 128, 3 GRU levels):
inference time per pair and peak memory at a CPU size (128×256) and at the training crop 320×736, and the training
step (forward + backward) at 128×256.

    python -m stereo.bench [--json OUT.json] [--quick]

CPU, fp32, torch.set_num_threads(2), random weights (speed does not depend on them), 8 GRU iterations (the
released model runs 32 at test time and trains with 22: per-iteration cost is the GRU share of these rows),
gradient checkpointing off. 128×256 rows: median of 3 timed runs after 1 warm-up; 320×736 rows: one timed run (a
single pair takes tens of seconds on 2 cores, and the whole benchmark must stay near 3 minutes). --quick: only
the 128×256 rows.

Peak memory = the largest resident-set size (RSS, /proc/self/statm, sampled every 2 ms by a thread) during the
warm-up and timed runs minus the RSS just before them (the model's own weights are not counted), after glibc
`malloc_trim(0)` has returned the previous workload's freed memory to the OS.

GPU rows (inference at 375×1242 in bf16; the paper quotes 0.7 s on an A100 for vitl) need a GPU; when none is
visible the bench says so instead of printing a number.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import threading
import time

import torch

from common.bench import finish
from stereo.core.foundation_stereo import FoundationStereo

ITERS = 8
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: .peak_mib = max RSS during the block minus RSS at entry (MiB)."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.peak_mib = (self.peak - self.base) / 2**20


def make_model(vit_size: str) -> FoundationStereo:
    torch.manual_seed(0)
    return FoundationStereo({"vit_size": vit_size, "max_disp": 416})


def time_workload(model, height: int, width: int, train: bool, runs: int, warmup: int) -> tuple[float, float]:
    """(median seconds per pair, peak MiB) for one pair of size height×width."""
    generator = torch.Generator().manual_seed(0)
    left = 255 * torch.rand(1, 3, height, width, generator=generator)
    right = 255 * torch.rand(1, 3, height, width, generator=generator)
    model.train(train)

    def once():
        if train:
            model.zero_grad(set_to_none=True)
            out = model(left, right, iters=ITERS)
            sum(d.mean() for d in out["disparities"]).add(out["init_disparity"].mean()).backward()
        else:
            with torch.no_grad():
                model(left, right, iters=ITERS, test_mode=True)

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    times = []
    with PeakRSS() as memory:
        for _ in range(warmup):
            once()
        for _ in range(runs):
            start = time.perf_counter()
            once()
            times.append(time.perf_counter() - start)
    return statistics.median(times), memory.peak_mib


def time_gpu_inference(vit_size: str) -> tuple[float, float]:
    """(median s, peak MiB) of one 375×1242 pair (KITTI size), 32 iterations, bf16 autocast, on the GPU."""
    model = make_model(vit_size).cuda().eval()
    left, right = (255 * torch.rand(1, 3, 375, 1242, device="cuda") for _ in range(2))
    torch.cuda.reset_peak_memory_stats()
    times = []
    for index in range(4):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(left, right, iters=32, test_mode=True)
        torch.cuda.synchronize()
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated() / 2**20


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--quick", action="store_true", help="only the 128×256 reg rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    plan = [(size, 128, 256, False, 3, 1) for size in ("vits", "vitl")]
    plan += [(size, 128, 256, True, 3, 1) for size in ("vits", "vitl")]
    if not args.quick:
        plan += [(size, 320, 736, False, 1, 0) for size in ("vits", "vitl")]
    rows = []
    for vit_size, height, width, train, runs, warmup in plan:
        model = make_model(vit_size)
        seconds, peak = time_workload(model, height, width, train, runs, warmup)
        del model
        kind = "train step (fwd+bwd)" if train else "inference"
        runs_note = f"median of {runs} after {warmup} warm-up" if runs > 1 else "1 timed run"
        rows.append({"project": "stereo",
                     "workload": f"FoundationStereo {vit_size} {kind} {height}x{width}, {ITERS} iters, max_disp 416",
                     "value": round(seconds, 3), "unit": "s/pair", "target": None, "higher_is_better": False,
                     "note": f"peak RSS +{peak:.0f} MiB; {runs_note}; CPU fp32, 2 threads"})
        print(f"{rows[-1]['workload']:<72} {seconds:8.3f} s   peak +{peak:7.0f} MiB   {runs_note}", flush=True)
    if torch.cuda.is_available():
        for vit_size in ("vits", "vitl"):
            seconds, peak = time_gpu_inference(vit_size)
            rows.append({"project": "stereo", "workload": f"FoundationStereo {vit_size} inference 375x1242, 32 iters, "
                         "max_disp 416, GPU bf16", "value": round(seconds, 3), "unit": "s/pair", "target": None,
                         "higher_is_better": False, "note": f"peak CUDA memory {peak:.0f} MiB; median of 3 after 1 "
                         f"warm-up; {torch.cuda.get_device_name()}; paper: 0.7 s (vitl, A100)"})
            print(f"{rows[-1]['workload']:<72} {seconds:8.3f} s   peak {peak:7.0f} MiB", flush=True)
    else:
        print("no GPU visible: the GPU rows (inference 375x1242 bf16; paper: 0.7 s on an A100 for vitl) were not measured")
    return finish(rows, args.json, table=False)  # the rows were printed as they were measured


if __name__ == "__main__":
    main()
