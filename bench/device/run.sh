#!/usr/bin/env bash
# The CUDA run on the GPU machine (from the project root there): bash .dev-cuda/run.sh [specs] [bench] [torch] [memcheck]
# Everything it needs was packed by bench/device/pack.sh into .dev-cuda; results go to $OUT.
set -uo pipefail
source .device/env.sh >/dev/null
D=$PWD/.dev-cuda
export TFJS_MOE_CUDA_ADDON=$D/tfjs_moe_cuda.node PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
steps=${*:-specs bench torch memcheck}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cd "$D"
for step in $steps; do
  echo "=== $step"
  case $step in
    specs)
      timeout 240 node run-specs.mjs > "$OUT/specs.log" 2>&1
      grep -v '^SKIPPED' "$OUT/specs.log" | grep -v '^\s*at ' | tail -45 ;;
    memcheck)
      TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_TIMEOUT:-150} compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
          node run-specs.mjs > "$OUT/memcheck.log" 2>&1
      echo "compute-sanitizer exit code $?"
      grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12 ;;
    torch)
      timeout 240 python3 torch_baseline.py --iters 15 --out "$OUT/torch.json" > "$OUT/torch.log" 2>&1
      python3 -c "
import json; r = json.load(open('$OUT/torch.json'))
print(r['device'], 'torch', r['torch'])
for x in r['results']: print(f\"{x['impl']:10s} {x['dtype']:9s} T={x['T']:5d} \", f\"{x['median_ms']:.4f} ms\" if 'median_ms' in x else x.get('error'))
" ;;
    bench)
      timeout 300 node cuda_bench.mjs --out "$OUT/cuda_bench.json" ${BENCH_ARGS:-} > "$OUT/cuda_bench.log" 2>&1
      tail -20 "$OUT/cuda_bench.log" ;;
  esac
done
