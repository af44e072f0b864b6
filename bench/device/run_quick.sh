#!/usr/bin/env bash
# One short GPU-machine run for a speed change (from the project root there):
#   bash <dir>/run_quick.sh <dir>       (<dir>: what bench/device/pack.sh packed, e.g. .dev-cuda2)
# Specs and compute-sanitizer memcheck run side by side (neither is timed), then the benchmark alone, then A/B
# benchmark with the previous behaviour switched back on through the tfjs flags (MOE_CUDA_PDL false,
# MOE_CUDA_GEMM_TILES 'previous'). Every step writes its log under $OUT as it goes, so a step cut short by its
# timeout still reports what it had.
set -uo pipefail
source .device/env.sh >/dev/null
D=$(cd "${1:?pack folder}" && pwd)
export TFJS_MOE_CUDA_ADDON=$D/tfjs_moe_cuda.node
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt"
cd "$D"
start=$(date +%s)
timeout ${SPECS_TIMEOUT:-150} node run-specs.mjs > "$OUT/specs.log" 2>&1 &
specs=$!
TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_TIMEOUT:-150} compute-sanitizer --tool memcheck --leak-check no \
    --error-exitcode 3 node run-specs.mjs > "$OUT/memcheck.log" 2>&1 &
memcheck=$!
wait $specs; echo "specs exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
wait $memcheck; echo "memcheck exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
grep -E 'passed, .* failed' "$OUT/specs.log" >> "$OUT/summary.txt"
grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" >> "$OUT/summary.txt"
bench() {  # label, timeout, args...
  local label=$1 limit=$2; shift 2
  echo "=== $label" >> "$OUT/bench.log"
  timeout "$limit" node cuda_bench.mjs "$@" --out "$OUT/bench_$label.json" 2>&1 | grep -v '^{' >> "$OUT/bench.log"
}
bench new ${BENCH_TIMEOUT:-75} --dtypes bfloat16,float32 --tokens 1,16,256,4096
bench previous ${AB_TIMEOUT:-40} --dtypes bfloat16 --tokens 1,16,4096 \
    --flags '{"MOE_CUDA_PDL": false, "MOE_CUDA_GEMM_TILES": "previous"}'
echo "all done after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
tail -40 "$OUT/bench.log"
