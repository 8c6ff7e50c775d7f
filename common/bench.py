"""The benchmark protocol shared by every `<project>/bench.py` and `make bench` (scripts/bench.py).

A project's bench writes a list of rows, each {"project", "workload", "value", "unit", "target" (or None),
"higher_is_better", "note"} and optionally "device"; scripts/bench.py gathers them into BENCHMARKS.md.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description() -> str:
    """'<CPU model>, <N> cores, torch <version>, <date>' for the header of a benchmark table."""
    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {datetime.date.today().isoformat()}"


def write_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write benchmark rows as JSON for scripts/bench.py; every row must name its workload, value and unit."""
    for row in rows:
        missing = {"project", "workload", "value", "unit"} - set(row)
        if missing:
            raise ValueError(f"Benchmark row {row} lacks {sorted(missing)}")
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")
