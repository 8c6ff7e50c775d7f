"""The demo's headline rows (OUT/headline.json, collected into the root README by scripts/demo.py): the trained
model's soft IoU on the three synthetic tracks beside the per-light baseline's (the strongest cheap predictor: the
mean shadow of the training samples with the nearest light) and the mean shadow's, plus the model's sensitivity to
each light parameter (1 = the prediction moves as much as the rendered shadow; the README's target is >= 0.5).

    python shadow/scripts/headline.py --eval OUT/eval --output OUT/headline.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METRIC = "all/iou"  # mean over the three tracks of the per-image soft IoU
BASELINES = {"baseline_light": "per-light mean shadow (k nearest training lights)", "baseline": "mean shadow"}


def headline_rows(metrics: dict, command: str) -> list[dict]:
    """Rows of the headline protocol from an evaluate.py metrics.json; a missing key is a KeyError naming it."""
    rows = [{"kind": "model", "name": "shadow unet (one step)", "metric": f"tracks/{METRIC}",
             "value": metrics[METRIC], "higher_is_better": True, "command": command}]
    for prefix, name in BASELINES.items():
        rows.append({"kind": "baseline", "name": name, "metric": f"tracks/{METRIC}",
                     "value": metrics[f"{prefix}/{METRIC}"], "higher_is_better": True, "command": command})
    for parameter in ("size", "theta", "phi"):
        rows.append({"kind": "model", "name": f"shadow unet: sensitivity to {parameter} (target >= 0.5)",
                     "metric": f"tracks/sensitivity/{parameter}", "value": metrics[f"sensitivity/{parameter}"],
                     "higher_is_better": True, "command": command})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", required=True, help="the evaluate.py output folder (its metrics.json)")
    parser.add_argument("--output", required=True, help="headline.json to write")
    parser.add_argument("--command", default="bash shadow/demo.sh OUT_DIR", help="recorded with every row")
    args = parser.parse_args(argv)
    path = Path(args.eval) / "metrics.json"
    if not path.is_file():
        parser.error(f"{path} does not exist: run shadow/evaluate.py --output {args.eval} first.")
    rows = headline_rows(json.loads(path.read_text()), args.command)
    Path(args.output).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    for row in rows:
        print(f"{row['kind']:8s} {row['name']:60s} {row['metric']} = {row['value']:.4f}")
    return rows


if __name__ == "__main__":
    main()
