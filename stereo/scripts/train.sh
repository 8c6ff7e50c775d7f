#!/usr/bin/env bash
# Launcher: one process per GPU with torchrun (single node), or plain python on CPU / one GPU.
#   NGPUS=8 bash stereo/scripts/train.sh --config stereo/configs/train/stereo_v1.json --workspace workspace/v1
# Every argument is passed to train.py. Multi-node: see scripts/slurm/stereo.sbatch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
NGPUS="${NGPUS:-1}"
if [ "$NGPUS" -gt 1 ]; then
    exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPUS" "$ROOT/stereo/scripts/train.py" "$@"
fi
exec "$PY" "$ROOT/stereo/scripts/train.py" "$@"
