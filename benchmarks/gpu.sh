#!/bin/bash
# The CUDA checks, for a machine with a GPU (nothing here runs in CI):
#   bash benchmarks/gpu.sh [OUT]
# 1. the quickstart on the GPU (precision auto: bf16 where the card has it) and its wall time;
# 2. the benchmark table (w2s's trainer against Hugging Face's Trainer, MFU, overheads, compile);
# 3. an 8-seed quickstart sweep with 4 workers on one GPU against 1 worker (every stage once, the same
#    numbers, and the wall time of each).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU paths"
print("GPU:", torch.cuda.get_device_name(), "| bf16:", torch.cuda.is_bf16_supported(), "| torch", torch.__version__)
PY
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
start=$(date +%s.%N)
w2s run experiments/quickstart.yaml --set output_dir="$out/quickstart" --set tracking.mode=disabled
echo "quickstart: $(echo "$(date +%s.%N) - $start" | bc) s"
python benchmarks/run.py --rounds 3 --compile --json "$out/benchmark.json"
seeds='[0,1,2,3,4,5,6,7]'
for workers in 1 4; do
  start=$(date +%s.%N)
  w2s run experiments/quickstart.yaml --set output_dir="$out/workers$workers" --set seeds="$seeds" \
    --set tracking.mode=disabled --workers "$workers" > "$out/workers$workers.log" 2>&1
  echo "quickstart x 8 seeds, $workers worker(s) on one GPU: $(echo "$(date +%s.%N) - $start" | bc) s"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {w: [json.loads(l) for l in (out / f"workers{w}" / "quickstart" / "results.jsonl").read_text().splitlines()]
        for w in (1, 4)}
strip = lambda rs: sorted((r["key"], r["test_accuracy"], r.get("pgr")) for r in rs)
print("4 workers give 1 worker's numbers:", strip(rows[1]) == strip(rows[4]), f"({len(rows[4])} stages)")
PY
