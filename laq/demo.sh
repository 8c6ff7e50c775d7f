#!/usr/bin/env bash
# LAQ demo: synthetic scenes (scene layout) -> short laq_tiny training -> validation metrics.
#   bash laq/demo.sh OUT_DIR
# Writes OUT_DIR/data (scenes.csv + scene_XXXX/frame_NNNN.jpg), OUT_DIR/run (checkpoints/last.pt, tb/, log.txt,
# metrics.json with val/psnr next to the copy-frame baseline val/copy_psnr, and val/action_nmi next to the
# shuffled-code chance level val/action_nmi_random) and OUT_DIR/labels.jsonl (latent actions of the val scenes).
set -euo pipefail
OUT="${1:?usage: bash laq/demo.sh OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then PY="${PYTHON}"
elif [[ -x "${ROOT}/.venv/bin/python" ]]; then PY="${ROOT}/.venv/bin/python"
else PY=python; fi
STEPS="${LAQ_DEMO_STEPS:-150}"
# One thread: laq_tiny's ops are small, and with two OpenMP threads on a busy machine a descheduled partner
# thread stalls every op (measured 10x slower under load); on two idle cores one thread loses little.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "${OUT}"

# 64 px frames, one 12 px square per quadrant (one per code position); all move 5 px per frame in one of 4
# directions, so the two frames of a pair (3 apart) differ by 15 px of motion everywhere.
"${PY}" -m laq.synth --out "${OUT}/data" --scenes 96 --frames 4 --image_size 64 --square 12 --step_px 5 --actions 4 \
    --grid 2
"${PY}" "${ROOT}/laq/scripts/2_train_laq.py" experiment=laq_debug hydra.run.dir="${OUT}/run" \
    data.folder="${OUT}/data" data.image_size=64 data.offsets=[3] data.max_samples=null data.batch_size=16 \
    data.val_split=0.25 training.epochs=1000 training.max_steps="${STEPS}" \
    training.optimizer.lr=2e-3 training.val_every_steps=1000 training.checkpoint_every_steps=1000 \
    logging.log_every=40 logging.image_every=120 trainer.device=cpu
"${PY}" "${ROOT}/laq/scripts/3_label_latent_actions.py" --ckpt "${OUT}/run/checkpoints/last.pt" \
    --folders "${OUT}/data" --offset 3 --no_clamp --out "${OUT}/labels.jsonl"
