#!/usr/bin/env bash
# A bounded (~10 minute) SAPO suite for a machine with one CUDA GPU: the stronger embedded policy (built and
# warm-started locally from the seed, no download) in the hard regime, the baseline against the shipped
# default and plain 4/4, paired over seeds. Results (JSON, table, plot) land in $OUT; copy them to docs/.
#
#   bash benchmarks/sapo_gpu.sh            # PYTHON=python3, OUT=docs/sapo-gpu, HIDDEN=512, LAYERS=8
#
# To ask "does sharing help MY model on MY tasks?", pass a node config instead (any HF path or hub id):
#   swarm-node experiment sapo --config my-node.yaml --rounds 200 --seeds 5 --workers 1 --out my-sapo
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-docs/sapo-gpu}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
timeout 660 "$PY" -m swarmrl.cli experiment sapo --regime hard --rounds "${ROUNDS:-150}" --seeds "${SEEDS:-3}" \
  --workers 1 --hidden-size "${HIDDEN:-512}" --layers "${LAYERS:-8}" --warmstart-steps "${WARMSTART:-600}" \
  --arm 4/4 --out "$OUT"
cat "$OUT/sapo-table.md"
