#!/usr/bin/env bash
# Demo: render a small long-shadow set, train the tiny 32 px UNet briefly, evaluate it on the three synthetic
# tracks. Both metrics.json files hold the model's numbers next to the mean-shadow baseline's ("baseline/...").
#   bash shadow/demo.sh OUT_DIR        (run from the repository root; ~90 s on 2 idle cores)
set -euo pipefail
OUT="${1:?usage: bash shadow/demo.sh OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
mkdir -p "$OUT"
# The 32 px model's convolutions are too small to gain from a second thread, and on a busy machine OpenMP threads
# that wait for each other make a step many times slower: one thread is the safe choice here.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$PY" -m shadow.synth --out "$OUT/data" --num 400 --image_size 32 --theta_range 30 45 --size_range 2 4 --workers 2
"$PY" "$ROOT/shadow/train.py" --data_dir "$OUT/data" --image_size 32 --batch_size 8 --mixed_precision no \
    --num_workers 0 --max_iterations 300 --lr 2e-3 --warmup_steps 20 --log_every 50 --eval_every 300 \
    --save_every 300 --output_dir "$OUT/run"
"$PY" "$ROOT/shadow/evaluate.py" --checkpoint "$OUT/run/best_model.pt" --synthetic --output "$OUT/eval" \
    --seeds 3 --num_objects 2
