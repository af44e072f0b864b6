#!/usr/bin/env bash
# The CUDA end-to-end run on the GPU machine (from the project root there): bash <dir>/run_e2e.sh <dir>
# (<dir>: what bench/device/pack.sh packed). The CUDA specs and compute-sanitizer memcheck of the end-to-end spec
# (small case) side by side, then the benchmark in bfloat16 and float32 (kernel, end to end, link), an A/B with
# the previous PDL / tile choices through the tfjs flags, and the torch baseline in bfloat16. Every step writes its
# log under $OUT as it goes, so a step cut short by its timeout still reports what it had.
set -uo pipefail
source .device/env.sh >/dev/null
D=$(cd "${1:?pack folder}" && pwd)
export TFJS_MOE_CUDA_ADDON=$D/tfjs_moe_cuda.node PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt"
start=$(date +%s)
(cd "$D" && timeout ${SPECS_TIMEOUT:-120} node run-specs.mjs > "$OUT/specs.log" 2>&1; echo "specs exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt") &
specs=$!
(cd "$D/memcheck" && TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_TIMEOUT:-120} compute-sanitizer --tool memcheck --leak-check no \
    --error-exitcode 3 node run-specs.mjs > "$OUT/memcheck.log" 2>&1; echo "memcheck exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt") &
memcheck=$!
wait $specs $memcheck
grep -E 'passed, .* failed' "$OUT/specs.log" >> "$OUT/summary.txt"
grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" >> "$OUT/summary.txt"
cd "$D"
bench() {  # label, timeout, args...
  local label=$1 limit=$2; shift 2
  echo "=== $label" >> "$OUT/bench.log"
  timeout "$limit" node cuda_bench.mjs "$@" --out "$OUT/bench_$label.json" 2>&1 | grep -v '^{' >> "$OUT/bench.log"
  echo "bench $label exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
}
steps=${STEPS:-bf16 f32 previous torch}
for step in $steps; do
  case $step in
    bf16) bench bf16 ${BENCH_TIMEOUT:-70} --dtypes bfloat16 --tokens 1,16,256,4096 ;;
    f32) bench f32 ${F32_TIMEOUT:-40} --dtypes float32 --tokens 1,16,256,4096 --iters 10 --e2e-iters 7 ;;
    previous) bench previous ${AB_TIMEOUT:-30} --dtypes bfloat16 --tokens 1,4096 --e2e-iters 3 \
        --flags '{"MOE_CUDA_PDL": false, "MOE_CUDA_GEMM_TILES": "previous"}' ;;
    torch)
      timeout ${TORCH_TIMEOUT:-40} python3 torch_baseline.py --dtypes bfloat16 --iters 15 --out "$OUT/torch.json" > /tmp/torch.log 2>&1
      echo "torch exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
      python3 -c "
import json; r = json.load(open('$OUT/torch.json'))
print(r['device'], 'torch', r['torch'])
for x in r['results']: print(f\"{x['impl']:10s} {x['dtype']:9s} T={x['T']:5d} \", f\"{x['median_ms']:.4f} ms\" if 'median_ms' in x else x.get('error'))
" >> "$OUT/summary.txt" 2>&1 ;;
  esac
done
cat "$OUT/summary.txt"
tail -30 "$OUT/bench.log"
