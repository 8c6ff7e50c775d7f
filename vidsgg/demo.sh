#!/usr/bin/env bash
# vidsgg demo: synthetic Action Genome -> brief STTran PredCLS training on cached features -> evaluation of the
# trained model and of the same model with random weights (the trivial baseline). Usage: vidsgg/demo.sh OUT_DIR
set -euo pipefail
OUT="${1:?usage: vidsgg/demo.sh OUT_DIR}"
ROOT="$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="${PYTHON:-$ROOT/.venv/bin/python}"; else PY="${PYTHON:-python}"; fi
mkdir -p "$OUT"
TINY=(-backbone_depth 18 -image_size 40 -max_size 56 -proj_dim 16 -embed_dim 8 -hidden_dim 32 -temporal_layer 1
      -num_heads 4 -union_dim 16 -bn_momentum 0.1 -cache_dir "$OUT/feature_cache")

"$PY" -m vidsgg.synth --out "$OUT/data" --videos 40 --width 64 --height 48 --seed 7
# The first epoch fills the feature cache; the other epochs read it and skip the backbone.
"$PY" "$ROOT/vidsgg/train.py" -mode predcls -model sttran -data_path "$OUT/data" -save_path "$OUT/sttran_predcls" \
    "${TINY[@]}" -epochs 10 -lr 3e-3 -scheduler cosine -eval_freq 5 -seed 1
"$PY" "$ROOT/vidsgg/test.py" -mode predcls -data_path "$OUT/data" "${TINY[@]}" \
    -model_path "$OUT/sttran_predcls/checkpoint_best.tar" -output "$OUT/test_trained"
"$PY" "$ROOT/vidsgg/test.py" -mode predcls -data_path "$OUT/data" "${TINY[@]}" -random_init True -seed 1 \
    -output "$OUT/test_random_weights"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
trained = json.loads((out / "test_trained" / "metrics.json").read_text())
random = json.loads((out / "test_random_weights" / "metrics.json").read_text())
print(f"PredCLS with-constraint R@20: trained {trained['test/with/R@20']:.3f}  random weights {random['test/with/R@20']:.3f}")
PYEOF
