"""`make demo`: a short training of every project on its own synthetic data, then one table of their headlines.

Each project contributes `<project>/demo.sh OUT_DIR`: it generates its data under OUT_DIR, trains, evaluates, and
writes OUT_DIR/headline.json,

    {"rows": [{"kind": "model" | "baseline" | "real", "name": "...", "metric": "val/psnr", "value": 19.3,
               "higher_is_better": true, "command": "the command that produced it"}, ...]}

(the model's main metric, the strongest trivial baseline's same metric, and the real-data check where one exists).
This script collects those files into one Markdown table, prints it, and rewrites the part of the root README
between HEADLINE_BEGIN and HEADLINE_END with it. A project whose headline.json is missing gets a line saying so.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ["laq", "vae_latent", "shadow", "stereo", "vidsgg"]
KINDS = ("model", "baseline", "real")
ROW_KEYS = {"kind": str, "name": str, "metric": str, "value": (int, float), "higher_is_better": bool, "command": str}
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"


class HeadlineError(ValueError):
    """A headline.json that does not follow the protocol above; the message names the file and the row."""


def run_project(project: str, out_dir: Path) -> tuple[str, float]:
    script = ROOT / project / "demo.sh"
    if not script.is_file():
        return "no demo.sh", 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "headline.json").unlink(missing_ok=True)  # a failed rerun must not show the last run's figures
    print(f"\n===== {project}: bash {script.relative_to(ROOT)} {out_dir} =====", flush=True)
    start = time.time()
    result = subprocess.run(["bash", str(script), str(out_dir)], cwd=ROOT)
    return ("ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"), time.time() - start


def read_headline(path: Path) -> list[dict]:
    """The rows of one headline.json, checked: every key present with its type, `kind` one of KINDS."""
    try:
        rows = json.loads(path.read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise HeadlineError(f"{path}: not a JSON object with a 'rows' list ({exc!r})") from exc
    if not isinstance(rows, list):
        raise HeadlineError(f"{path}: 'rows' must be a list, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise HeadlineError(f"{path}: row {index} is not an object")
        for key, kind in ROW_KEYS.items():
            value = row.get(key)
            # bool is an int subclass: true is no metric value, and 1 is no higher_is_better.
            if not isinstance(value, kind) or (key == "value" and isinstance(value, bool)):
                raise HeadlineError(f"{path}: row {index} ({row.get('name', '?')}): '{key}' must be "
                                    f"{getattr(kind, '__name__', 'a number')}, got {value!r}")
        if row["kind"] not in KINDS:
            raise HeadlineError(f"{path}: row {index} ({row['name']}): kind {row['kind']!r} is not one of {KINDS}")
    return rows


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def format_value(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.4g}"


def headline_table(out: Path, projects: list[str] = PROJECTS) -> str:
    """One Markdown table of every project's OUT/<project>/headline.json, in project order."""
    lines = ["| project | kind | what | metric | value | command |", "|---|---|---|---|---|---|"]
    for project in projects:
        path = out / project / "headline.json"
        if not path.is_file():
            lines.append(f"| {project} | — | **no headline**: `{project}/headline.json` was not written "
                         f"(demo not run, failed, or the project does not write it yet) | — | — | — |")
            continue
        rows = read_headline(path)
        if not rows:
            lines.append(f"| {project} | — | **no headline**: `{project}/headline.json` has no rows | — | — | — |")
        for row in rows:
            better = "↑" if row["higher_is_better"] else "↓"
            lines.append(f"| {project} | {row['kind']} | {cell(row['name'])} | {cell(row['metric'])} {better} | "
                         f"{format_value(row['value'])} | `{cell(row['command'])}` |")
    return "\n".join(lines)


def rewrite_readme_section(readme: Path, body: str) -> None:
    """Replace what lies between the headline markers of `readme` with `body` (markers kept)."""
    text = readme.read_text()
    begin, end = text.find(HEADLINE_BEGIN), text.find(HEADLINE_END)
    if begin < 0 or end < begin:
        raise HeadlineError(f"{readme}: needs the markers {HEADLINE_BEGIN} and then {HEADLINE_END} around the "
                            f"headline table")
    readme.write_text(text[:begin + len(HEADLINE_BEGIN)] + "\n" + body.strip() + "\n" + text[end:])


def print_all_metrics(out: Path, projects: list[str]) -> None:
    for project in projects:
        for path in sorted((out / project).rglob("metrics.json")):
            print(f"\n{path.relative_to(out)}")
            for key, value in sorted(json.loads(path.read_text()).items()):
                print(f"  {key:<36} {format_value(value) if isinstance(value, float) else value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_runs", help="folder for all demo data and runs")
    parser.add_argument("--only", nargs="*", default=PROJECTS, choices=PROJECTS, help="projects to run")
    parser.add_argument("--all_metrics", action="store_true", help="also print every key of every metrics.json")
    parser.add_argument("--summary_only", action="store_true", help="only collect the headlines of an earlier run")
    parser.add_argument("--readme", default=str(ROOT / "README.md"),
                        help="README whose headline section is rewritten ('' to leave it alone)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    statuses = {}
    for project in args.only:
        statuses[project] = ("not run", 0.0) if args.summary_only else run_project(project, out / project)

    print("\n===== demo summary =====")
    for project, (status, seconds) in statuses.items():
        print(f"{project:<12} {status:<22} {seconds:6.0f}s")
    if args.all_metrics:
        print_all_metrics(out, args.only)
    table = headline_table(out)  # every project, so a partial rerun keeps the others' earlier headlines
    print("\n" + table)
    if args.readme:
        stamp = f"_Written by `make demo` on {datetime.date.today().isoformat()} from `{out.name}/<project>/headline.json`._"
        rewrite_readme_section(Path(args.readme), f"{stamp}\n\n{table}")
        print(f"\nRewrote the headline section of {args.readme}")
    failed = [p for p, (status, _) in statuses.items() if status.startswith("FAILED")]
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
