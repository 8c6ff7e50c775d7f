#!/usr/bin/env bash
# Launch VAE training on every visible GPU (or --gpus N), or on the CPU in one process when there is none.
#   bash vae_latent/run_train.sh [--gpus N] [--config FILE] [--resume auto|PATH] [--set key.sub=value ...]
# 2+ GPUs: torchrun --standalone --nproc_per_node=N vae_latent/train_ddp.py; 1 GPU or CPU: train_single_gpu.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python

GPUS=""
CONFIG="$ROOT/vae_latent/config_vae_sthv2.yaml"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --resume) EXTRA+=(--resume "$2"); shift 2 ;;
    --set) EXTRA+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "run_train.sh: unknown argument '$1' (expected --gpus, --config, --resume, --set)" >&2; exit 2 ;;
  esac
done

# GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists.
if [[ -n "${CUDA_VISIBLE_DEVICES+x}" ]]; then
  VISIBLE=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c '[^[:space:]]' || true)
elif command -v nvidia-smi > /dev/null 2>&1; then
  VISIBLE=$(nvidia-smi --list-gpus 2> /dev/null | grep -c '^GPU' || true)
else
  VISIBLE=0
fi
if [[ -z "$GPUS" ]]; then
  GPUS="$VISIBLE"
elif ! [[ "$GPUS" =~ ^[0-9]+$ ]]; then
  echo "run_train.sh: --gpus must be a non-negative integer, got '$GPUS'" >&2; exit 2
elif (( GPUS > VISIBLE )); then
  echo "run_train.sh: --gpus $GPUS asked for, but only $VISIBLE GPU(s) are visible" >&2; exit 2
fi

cd "$ROOT"
if (( GPUS >= 2 )); then
  echo "Training on $GPUS GPUs with torchrun (DDP)"
  exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" vae_latent/train_ddp.py \
    --config "$CONFIG" --set trainer_params.gpus="$GPUS" "${EXTRA[@]}"
elif (( GPUS == 1 )); then
  echo "Training on 1 GPU"
  exec "$PY" vae_latent/train_single_gpu.py --config "$CONFIG" --set trainer_params.gpus=1 "${EXTRA[@]}"
else
  echo "No GPU found: training on the CPU in one process"
  exec "$PY" vae_latent/train_single_gpu.py --config "$CONFIG" --set trainer_params.gpus=0 "${EXTRA[@]}"
fi
