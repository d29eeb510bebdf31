#!/usr/bin/env bash
# Rebuild the default model: models/bears.{pkl,onnx,json} + confusion/top-loss PNGs, then score it
# on the held-out bears and the held-out non-bear pictures (bench/results/model_quality.json, and
# the `scores.report` block of models/bears.json). About 6-10 minutes on 2 CPU cores.
#   PYTHON=.venv/bin/python DATA=../shared/data bash bench/make_model.sh
#   PLAIN=1 ... also trains the plain 3-class fine-tune baseline (into build/, ~5 more minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data}
NEG=${NEG:-build/negatives}   # build/ is not committed
if [ ! -d "$DATA/bears" ]; then
  echo "make_model: $DATA/bears not found; nothing to train on" >&2
  exit 1
fi
rm -rf "$NEG"
"$PY" bench/data/make_negatives.py "$NEG"
"$PY" -m teddywatch.training "$DATA/bears" --out models --negatives "$NEG/train" --epochs 3 --seed 42
PLAIN_ARGS=()
if [ "${PLAIN:-0}" = 1 ]; then
  "$PY" -m teddywatch.training "$DATA/bears" --out build/plain --plain-head --epochs 3 --seed 42
  PLAIN_ARGS=(--plain build/plain/bears.pkl)
fi
"$PY" bench/model_quality.py --data "$DATA" --model models/bears.pkl --negatives "$NEG" \
  "${PLAIN_ARGS[@]}" --update-metadata models/bears.json
