"""`make demo`: a short training of every project on its own synthetic data, then one table of their metrics.

Each project contributes `<project>/demo.sh OUT_DIR`, which generates its synthetic data under OUT_DIR, trains,
and leaves the validation `metrics.json` of its runs somewhere under OUT_DIR.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ["laq", "vae_latent", "shadow", "stereo", "vidsgg"]


def run_project(project: str, out_dir: Path) -> tuple[str, float]:
    script = ROOT / project / "demo.sh"
    if not script.is_file():
        return "not built yet", 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n===== {project}: bash {script.relative_to(ROOT)} {out_dir} =====", flush=True)
    start = time.time()
    result = subprocess.run(["bash", str(script), str(out_dir)], cwd=ROOT)
    return ("ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"), time.time() - start


def summary_rows(project: str, out_dir: Path) -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(out_dir.rglob("metrics.json")):
        metrics = json.loads(path.read_text())
        run = str(path.parent.relative_to(out_dir)) or "."
        for key, value in sorted(metrics.items()):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            rows.append((f"{project}/{run}", key, shown))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_runs", help="folder for all demo data and runs")
    parser.add_argument("--only", nargs="*", default=PROJECTS, choices=PROJECTS, help="projects to run")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    statuses = {}
    for project in args.only:
        statuses[project] = run_project(project, out / project)

    print("\n===== demo summary =====")
    print(f"{'project':<12} {'status':<22} {'time':>7}")
    for project, (status, seconds) in statuses.items():
        print(f"{project:<12} {status:<22} {seconds:6.0f}s")
    rows = [row for project in args.only for row in summary_rows(project, out / project)]
    if rows:
        width = max(len(r[0]) for r in rows)
        key_width = max(len(r[1]) for r in rows)
        print(f"\n{'run':<{width}}  {'metric':<{key_width}}  value")
        for run, key, value in rows:
            print(f"{run:<{width}}  {key:<{key_width}}  {value}")
    failed = [p for p, (status, _) in statuses.items() if status.startswith("FAILED")]
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
