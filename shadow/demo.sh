#!/usr/bin/env bash
# Demo, and the CPU-sized run the README documents: render 2,000 samples over the paper's full light ranges
# (θ 0-45, φ 0-359, size 2-8) at 32 px, train the tiny UNet 3,000 steps, evaluate it on the three synthetic
# tracks, and write OUT_DIR/headline.json (the model's track IoU beside the per-light and mean-shadow baselines',
# and its sensitivity to size, θ and φ).
#   bash shadow/demo.sh OUT_DIR        (run from the repository root; about 8 min on 2 idle cores)
# SHADOW_DEMO_STEPS=N shortens the training (the README's numbers are for 3000).
set -euo pipefail
OUT="$(mkdir -p "${1:?usage: bash shadow/demo.sh OUT_DIR}" && cd "$1" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
STEPS="${SHADOW_DEMO_STEPS:-3000}"
# The 32 px model's convolutions are too small to gain from a second thread, and on a busy machine OpenMP threads
# that wait for each other make a step many times slower: one thread is the safe choice here.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

rm -rf "$OUT/data" "$OUT/run" "$OUT/eval"  # a demo is a fresh run: train.py refuses an old run's folder
"$PY" -m shadow.synth --out "$OUT/data" --num 2000 --image_size 32 --workers 2
"$PY" "$ROOT/shadow/train.py" --data_dir "$OUT/data" --image_size 32 --batch_size 16 --mixed_precision no \
    --num_workers 0 --max_iterations "$STEPS" --lr 2e-3 --lr_schedule cosine --warmup_steps 20 --log_every 250 \
    --eval_every "$STEPS" --save_every "$STEPS" --output_dir "$OUT/run"
"$PY" "$ROOT/shadow/evaluate.py" --checkpoint "$OUT/run/latest_model.pt" --synthetic --output "$OUT/eval" \
    --seeds 2 --num_objects 8
"$PY" "$ROOT/shadow/scripts/headline.py" --eval "$OUT/eval" --output "$OUT/headline.json"
