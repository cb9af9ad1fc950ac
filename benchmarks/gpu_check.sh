#!/usr/bin/env bash
# GPU check for the trainer: the vLLM backend tests (tests/gpu: sampling, log-probs against the policy,
# vLLM vs hf tokens/s on a 0.5B-class Qwen2 built from a config, in-place weight sync) and end-to-end node
# rounds on CUDA with the hf and the vllm backends. Prints the figures; designed to finish in < 8 minutes on
# one H200 with torch + transformers preinstalled (vllm is pip-installed when missing and reachable).
#
#   bash benchmarks/gpu_check.sh            # PYTHON=python3 by default; OUT=<dir> keeps the reports
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
status=0
stage() { printf '\n=== %s (%ss elapsed) ===\n' "$1" "$SECONDS"; }

stage "environment"
"$PY" - <<'EOF'
import torch, transformers
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("transformers", transformers.__version__)
EOF
if ! "$PY" -c "import swarmrl.node.node" 2>/dev/null; then
  echo "installing swarmrl's dependencies (editable install)"
  timeout 180 "$PY" -m pip install -q -e . || echo "WARNING: editable install failed; continuing with PYTHONPATH"
fi
if ! "$PY" -c "import vllm" 2>/dev/null; then
  echo "vllm missing: pip install vllm (this may take a few minutes)"
  timeout 240 "$PY" -m pip install -q vllm || echo "WARNING: could not install vllm; vLLM checks will be skipped"
fi
"$PY" -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null || echo "vllm: not available"
"$PY" -m pip install -q pytest pytest-timeout >/dev/null 2>&1 || true

stage "tests/gpu (vLLM backend)"
rm -f "$OUT/gpu.jsonl"
SWARMRL_GPU_REPORT="$OUT/gpu.jsonl" timeout 300 "$PY" -m pytest -q -s -p no:cacheprovider tests/gpu \
  -o addopts="" 2>&1 | tail -40
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

node_round() {  # $1 = backend
  local dir="$OUT/node-$1"
  rm -rf "$dir"
  timeout 150 "$PY" -m swarmrl.cli run --data-dir "$dir" --rounds 3 --metrics-port -1 \
    --set model.device=cuda --set "generation.backend=$1" --set node.progress=plain 2>&1 | tail -6
  return "${PIPESTATUS[0]}"
}
stage "node rounds on CUDA, hf backend"
node_round hf || status=1
if "$PY" -c "import vllm" 2>/dev/null; then
  stage "node rounds on CUDA, vllm backend"
  node_round vllm || status=1
fi

stage "figures"
[ -f "$OUT/gpu.jsonl" ] && cat "$OUT/gpu.jsonl"
echo "reports in $OUT; total ${SECONDS}s; status $status"
exit $status
