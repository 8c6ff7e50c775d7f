"""`make bench`: run every project's benchmark and write BENCHMARKS.md at the repository root.

Each project provides `python -m <project>.bench --json FILE`, which writes a list of rows:
{"project", "workload", "value", "unit", "target" (or null), "higher_is_better", "note"} and optionally
"device" (defaults to this machine's CPU). Rows are gathered into one table with the ratio to the target.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from common.bench import cpu_model

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ["laq", "vae_latent", "shadow", "stereo", "vidsgg"]


def run_bench(project: str, timeout_s: int, quick: bool) -> tuple[list[dict], str]:
    if not (ROOT / project / "bench.py").is_file():
        return [], "no bench.py yet"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", f"{project}.bench", "--json", str(out)] + (["--quick"] if quick else [])
        print(f"\n===== {' '.join(cmd[1:])} =====", flush=True)
        try:
            result = subprocess.run(cmd, cwd=ROOT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return [], f"timed out after {timeout_s}s"
        if result.returncode != 0 or not out.is_file():
            return [], f"failed (exit {result.returncode})"
        return json.loads(out.read_text()), "ok"


def ratio_text(row: dict) -> str:
    target, value = row.get("target"), row.get("value")
    if target in (None, 0) or value is None:
        return "—"
    ratio = value / target if row.get("higher_is_better", True) else target / value
    return f"{ratio:.2f}× {'✓' if ratio >= 1 else '✗'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=PROJECTS, choices=PROJECTS)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per project")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()

    machine = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    date = datetime.date.today().isoformat()
    rows, statuses = [], {}
    for project in args.only:
        project_rows, statuses[project] = run_bench(project, args.timeout, args.quick)
        rows += project_rows

    lines = ["# Benchmarks", "",
             f"Written by `make bench` on {date}. CPU rows: {machine}; fp32, `torch.set_num_threads(2)`, "
             "median of the timed runs after warm-up. Ratio = figure / target (or target / figure where lower "
             "is better); ✓ meets the target. GPU rows are marked in the device column.", "",
             "| project | workload | figure | target | ratio | device | note |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        unit = row.get("unit", "")
        value = row.get("value")
        figure = "—" if value is None else f"{value:.4g} {unit}"
        target = "—" if row.get("target") is None else f"{'≥' if row.get('higher_is_better', True) else '≤'} {row['target']:g} {unit}"
        lines.append(f"| {row.get('project', '?')} | {row['workload']} | {figure} | {target} | {ratio_text(row)} | "
                     f"{row.get('device', 'CPU')} | {row.get('note', '')} |")
    if "laq" in args.only and not any(str(row.get("device", "CPU")).startswith("GPU") for row in rows):
        lines.append("| laq | train laq_lapa bf16, largest batch that fits | not measured | ≥ 40 % MFU | — | GPU | "
                     "no CUDA device on the machine that ran `make bench`; `python -m laq.bench` measures it "
                     "when one is present |")
    lines += ["", "Status per project: " + ", ".join(f"{p}: {s}" for p, s in statuses.items()), ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(s in ("ok", "no bench.py yet") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
