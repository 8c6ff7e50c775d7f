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


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table: workload, value, unit, target (≥ / ≤), note."""
    width = max((len(r["workload"]) for r in rows), default=8)
    lines = [f"{'workload':<{width}}  {'value':>12}  {'unit':<20}  {'target':>10}  note"]
    for r in rows:
        target = "-" if r.get("target") is None else f"{'≥' if r.get('higher_is_better', True) else '≤'} {r['target']:g}"
        lines.append(f"{r['workload']:<{width}}  {r['value']:>12.6g}  {r['unit']:<20}  {target:>10}  {r.get('note', '')}")
    return "\n".join(lines)


def finish(rows: list[dict], json_path: str | os.PathLike | None, table: bool = True) -> list[dict]:
    """End of a project's bench: the machine line, the table (unless the bench printed its rows as it went) and
    the JSON rows for scripts/bench.py when `json_path` is given."""
    print(f"machine: {machine_description()}")
    if table:
        print(format_table(rows))
    if json_path:
        write_rows(json_path, rows)
    return rows
