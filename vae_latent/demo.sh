#!/usr/bin/env bash
# Demo: train a small VAE briefly on LAQ's synthetic frames, then compare it with the LAQ demo checkpoint.
#   bash vae_latent/demo.sh OUT_DIR
# Uses OUT_DIR/../laq/data (frames) and OUT_DIR/../laq/run/checkpoints/last.pt left by `bash laq/demo.sh
# OUT_DIR/../laq` (run first when they are missing). Writes OUT_DIR/logs_vae/demo/metrics.json (validation, with
# the mean-image baseline) and OUT_DIR/compare/{comparison.png,metrics.json} (VAE vs LAQ vs copying the frame).
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: bash vae_latent/demo.sh OUT_DIR" >&2; exit 2; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
LAQ_DIR="$(dirname "$OUT")/laq"
LAQ_DATA="$LAQ_DIR/data"
LAQ_CKPT="$LAQ_DIR/run/checkpoints/last.pt"
cd "$ROOT"
# The demo model is tiny: one intra-op thread is as fast as two and leaves a core to the data-loading worker.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

if [[ ! -d "$LAQ_DATA" || ! -f "$LAQ_CKPT" ]]; then
  echo "== LAQ demo outputs not found under $LAQ_DIR: running bash laq/demo.sh $LAQ_DIR first"
  bash laq/demo.sh "$LAQ_DIR"
fi

start=$SECONDS
echo "== training the demo VAE on $LAQ_DATA"
"$PY" vae_latent/train_single_gpu.py --config vae_latent/config_vae_demo.yaml \
  --set data_params.data_path="$LAQ_DATA" --set logging_params.save_dir="$OUT/logs_vae" \
  --set trainer_params.max_steps=200 --set trainer_params.max_epochs=1000

echo "== comparing the VAE with LAQ"
"$PY" vae_latent/compare_with_laq.py --vae "$OUT/logs_vae/demo/checkpoints/vae_final.pt" --laq "$LAQ_CKPT" \
  --frames_dir "$LAQ_DATA" --max_pairs 32 --output "$OUT/compare"
echo "== vae_latent demo done in $((SECONDS - start)) s: $OUT/logs_vae/demo/metrics.json, $OUT/compare/comparison.png"
