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
# The metrics the summary shows for each project: the model's figure next to its trivial baseline. Every
# metrics.json keeps all keys; `--all_metrics` prints them all.
HEADLINE = {
    "laq": ["val/psnr", "val/copy_psnr", "val/unique_codes", "val/perplexity", "val/action_nmi",
            "val/action_nmi_random"],
    "vae_latent": ["val/mse", "val/baseline_mse", "val/psnr", "val/ssim", "val/kld", "val/active_units",
                   "vae/mse", "laq/mse", "copy_first/mse"],
    "shadow": ["val/iou", "baseline/iou", "val/rmse", "baseline/rmse", "all/iou", "baseline/all/iou"],
    "stereo": ["val/epe", "val/baseline_mean_epe", "val/d1", "eval/epe"],
    "vidsgg": ["test/with/R@20", "test/with/mR@20", "val/with/R@20"],
}


def run_project(project: str, out_dir: Path) -> tuple[str, float]:
    script = ROOT / project / "demo.sh"
    if not script.is_file():
        return "not built yet", 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n===== {project}: bash {script.relative_to(ROOT)} {out_dir} =====", flush=True)
    start = time.time()
    result = subprocess.run(["bash", str(script), str(out_dir)], cwd=ROOT)
    return ("ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"), time.time() - start


def summary_rows(project: str, out_dir: Path, all_metrics: bool) -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(out_dir.rglob("metrics.json")):
        metrics = json.loads(path.read_text())
        run = str(path.parent.relative_to(out_dir)) or "."
        keys = sorted(metrics) if all_metrics else [k for k in HEADLINE.get(project, []) if k in metrics]
        for key in keys:
            value = metrics[key]
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            rows.append((f"{project}/{run}", key, shown))
        if not keys:
            rows.append((f"{project}/{run}", f"({len(metrics)} metrics)", str(path.relative_to(out_dir.parent))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_runs", help="folder for all demo data and runs")
    parser.add_argument("--only", nargs="*", default=PROJECTS, choices=PROJECTS, help="projects to run")
    parser.add_argument("--all_metrics", action="store_true", help="print every key of every metrics.json")
    parser.add_argument("--summary_only", action="store_true", help="print the summary of an earlier run")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    statuses = {}
    for project in args.only:
        statuses[project] = ("not run", 0.0) if args.summary_only else run_project(project, out / project)

    print("\n===== demo summary =====")
    print(f"{'project':<12} {'status':<22} {'time':>7}")
    for project, (status, seconds) in statuses.items():
        print(f"{project:<12} {status:<22} {seconds:6.0f}s")
    rows = [row for project in args.only for row in summary_rows(project, out / project, args.all_metrics)]
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
