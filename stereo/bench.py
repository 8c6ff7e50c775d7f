"""Benchmark: training step (forward + backward) and inference time per pair, with peak memory, for the `reg`
and `alt` correlation, at a CPU-sized crop (128×256) and at the training crop 320×736.

    python -m stereo.bench [--json OUT.json] [--quick]

CPU, fp32, torch.set_num_threads(2), default `cnn` model config (stereo_v1.json) with max_disp 192 and 8 GRU
iterations (issue 9's workload); gradient checkpointing off. 128×256 figures are medians of 5 timed runs after one
warm-up run. 320×736 figures are ONE timed run after no warm-up beyond the 128×256 runs (a 320×736 training step
takes tens of seconds on 2 cores, and the whole benchmark must stay under ~2 minutes). --quick: only the 128×256
reg rows.

Peak memory = the largest resident-set size (RSS, /proc/self/statm, sampled every 2 ms by a thread) during the
warm-up and timed runs minus the RSS just before them, after glibc `malloc_trim(0)` has returned the previous
workload's freed memory to the OS. tracemalloc would miss torch's allocations, and ru_maxrss is a lifetime
maximum that cannot be reset between workloads.
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
from stereo.core.model import build_model
from stereo.train.config import load_config


CONFIG = os.path.join(os.path.dirname(__file__), "configs", "train", "stereo_v1.json")
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


def make_model(implementation: str):
    cfg = load_config(CONFIG)["model"]
    cfg.update(max_disp=192, correlation_implementation=implementation, train_iters=8, valid_iters=8)
    torch.manual_seed(0)
    return build_model(cfg)


def time_workload(model, height: int, width: int, train: bool, runs: int, warmup: int) -> tuple[float, float]:
    """(median seconds per pair, peak MiB) for one pair of size height×width."""
    generator = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, height, width, generator=generator)
    right = torch.rand(1, 3, height, width, generator=generator)
    model.train(train)

    def once():
        if train:
            model.zero_grad(set_to_none=True)
            out = model(left, right, iters=8)
            sum(d.mean() for d in out["disparities"]).add(out["init_disparity"].mean()).backward()
        else:
            with torch.no_grad():
                model(left, right, iters=8)

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


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--quick", action="store_true", help="only the 128×256 reg rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    plan = [("reg", 128, 256, True, 5, 1, 4.0), ("reg", 128, 256, False, 5, 1, None)]
    if not args.quick:
        plan += [("alt", 128, 256, True, 5, 1, None), ("alt", 128, 256, False, 5, 1, None),
                 ("reg", 320, 736, False, 1, 0, None), ("alt", 320, 736, False, 1, 0, None),
                 ("reg", 320, 736, True, 1, 0, None)]
    rows, models = [], {}
    for implementation, height, width, train, runs, warmup, target in plan:
        model = models.setdefault(implementation, make_model(implementation))
        seconds, peak = time_workload(model, height, width, train, runs, warmup)
        kind = "train step (fwd+bwd)" if train else "inference"
        runs_note = f"median of {runs} after {warmup} warm-up" if runs > 1 else "1 timed run"
        rows.append({"project": "stereo", "workload": f"{kind} {height}x{width} {implementation}, 8 iters, max_disp 192",
                     "value": round(seconds, 3), "unit": "s/pair", "target": target, "higher_is_better": False,
                     "note": f"peak RSS +{peak:.0f} MiB; {runs_note}; fp32, 2 threads, cnn stereo_v1"})
        print(f"{rows[-1]['workload']:<58} {seconds:8.3f} s   peak +{peak:7.0f} MiB   {runs_note}", flush=True)
    return finish(rows, args.json, table=False)  # the rows were printed as they were measured


if __name__ == "__main__":
    main()
