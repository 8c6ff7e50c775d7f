#!/usr/bin/env bash
# `make demo` hook: synthetic stereo data -> a short training of FoundationStereo's tiny config -> evaluation ->
# inference -> the real Middlebury "motorcycle" pair -> OUT_DIR/headline.json.
# Usage: bash stereo/demo.sh OUT_DIR   (from the repository root; several minutes on 2 CPU cores)
# Leaves OUT_DIR/run/metrics.json (val/epe next to val/best_constant_epe and val/baseline_mean_epe),
# OUT_DIR/eval/metrics.json (evaluate.py on the EMA weights) and OUT_DIR/headline.json (the model, the best
# constant disparity, and both on the real pair).
set -euo pipefail
OUT="${1:?usage: stereo/demo.sh OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
STEPS="${STEREO_DEMO_STEPS:-150}"
# One intra-op thread: on a shared or busy machine two OpenMP threads per process slow the tiny model down
# several-fold (spin-waiting), while on 2 idle cores the loss is small.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"

"$PY" -m stereo.synth --out "$OUT/data/train" --num 64 --height 72 --width 112 --max_disp 30 --seed 0
"$PY" -m stereo.synth --out "$OUT/data/val" --num 8 --height 72 --width 112 --max_disp 30 --seed 1
sed -e "s#data/synth_train#$OUT/data/train#" -e "s#data/synth_val#$OUT/data/val#" \
    "$ROOT/stereo/configs/train/stereo_tiny.json" > "$OUT/stereo_tiny.json"

"$PY" "$ROOT/stereo/scripts/train.py" --config "$OUT/stereo_tiny.json" --workspace "$OUT/run" \
    --batch_size_forward 4 --num_iterations "$STEPS" --log_every 20 --save_every "$STEPS" --vis_every "$STEPS" \
    --num_vis_images 2 --enable_gradient_checkpointing false --enable_mlflow false --seed 0

CKPT="$OUT/run/checkpoint/$(printf '%08d' "$STEPS").pt"
"$PY" "$ROOT/stereo/scripts/evaluate.py" --checkpoint "$CKPT" --ema --data "$OUT/data/val" --format folder \
    --output "$OUT/eval" --num_vis 2
"$PY" "$ROOT/stereo/scripts/demo.py" --left "$OUT/data/val/left/rgb/000000.png" \
    --right "$OUT/data/val/right/rgb/000000.png" --checkpoint "$CKPT" --ema --output "$OUT/inference"
"$PY" "$ROOT/stereo/scripts/headline.py" --run "$OUT/run" --checkpoint "$CKPT" --ema --output "$OUT/headline.json"
