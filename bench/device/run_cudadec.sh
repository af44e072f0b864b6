#!/usr/bin/env bash
# The cudadec lane's GPU batch (session 7): decode GEMM specs (plain and under compute-sanitizer memcheck, side by
# side), then the layer at T = 1 and 16 for int4 and bf16 with the GEMV kernel A/B'd interleaved against the
# default, the stage profile with and without it, ncu of the GEMMs at one and 16 tokens, and an nsys kernel trace of
# the graph replay where nsys exists. Every step under its own timeout, logs under $OUT as they go.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd "$(dirname "$0")"
[ -n "${ROOT:-}" ] && [ -f "$ROOT/.device/env.sh" ] && source "$ROOT/.device/env.sh" >/dev/null 2>&1
start=$(date +%s)
stamp() { echo "$1 exit $2 at $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"; }
tar xJf payload.tar.xz
export TFJS_MOE_CUDA_ADDON=$PWD/tfjs_moe_cuda.node
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt" 2>&1
cat commit.txt >> "$OUT/summary.txt"
timeout 40 node run-specs.mjs > "$OUT/specs.log" 2>&1; stamp specs $?
grep -E 'passed, .* failed|Failures|Expected|withContext|T [0-9]' "$OUT/specs.log" | head -40 >> "$OUT/summary.txt"
if [ "${MEMCHECK:-0}" = 1 ]; then
  TFJS_MOE_SPEC_SCALE=small timeout 60 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
      node run-specs.mjs > "$OUT/memcheck.log" 2>&1; stamp memcheck $?
  grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" >> "$OUT/summary.txt"
fi
G='"env:TFJS_MOE_CUDA_DECODE_GEMV"'
F='"MOE_CUDA_FUSE"'
# One round of variants (repeated three times, interleaved with the default {}): the GEMV kernel, 4 columns per warp,
# with the combine in the down GEMM's tail, with the route kernel too, and the default with those fusions.
AB4="{$G:\"int4\"},{},{$G:\"int4c4\"},{$G:\"int4\",$F:\"combine\"},{$G:\"int4\",$F:\"all\"},{$F:\"all\"}"
ABH="{$G:\"half\"},{},{$G:\"half\",$F:\"combine\"},{$G:\"half\",$F:\"all\"},{$F:\"all\"}"
timeout 25 node cuda_bench.mjs --kernel-only --dtypes int4 --tokens 1,16 --iters 30 \
    --ab "[$AB4,$AB4,$AB4]" \
    --out "$OUT/ab_int4.json" 2>&1 | grep -v "^{" > "$OUT/ab_int4.log"; stamp ab_int4 ${PIPESTATUS[0]}
timeout 20 node cuda_bench.mjs --kernel-only --dtypes bfloat16 --tokens 1,16 --iters 30 \
    --ab "[$ABH,$ABH,$ABH]" \
    --out "$OUT/ab_bf16.json" 2>&1 | grep -v "^{" > "$OUT/ab_bf16.log"; stamp ab_bf16 ${PIPESTATUS[0]}
# The stage profile (eager launches, events between stages) with the GEMV kernel as the default.
TFJS_MOE_CUDA_DECODE_GEMV=all timeout 20 node cuda_bench.mjs --kernel-only --dtypes bfloat16,int4 --tokens 1,16 --iters 10 \
    --out "$OUT/gemv_stages.json" 2>&1 | grep -v "^{" > "$OUT/gemv_stages.log"; stamp gemv_stages ${PIPESTATUS[0]}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
if [ -n "$NCU" ]; then
  TFJS_MOE_CUDA_DECODE_GEMV=all timeout 25 "$NCU" --clock-control none -k regex:'gemvGemmKernel|mmaGemmKernel' \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      node cuda_bench.mjs --ncu --kernel-only --dtypes int4 --tokens 1,16 > "$OUT/ncu_int4_gemv.txt" 2>&1
  stamp "ncu int4 gemv" $?
fi
# Kernel durations and the gaps between them inside the graph replay: default first, then the GEMV kernel.
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  timeout 30 "$NSYS" profile --cuda-graph-trace=node -t cuda -o "$OUT/nsys_int4_t1" --force-overwrite true \
      node cuda_bench.mjs --kernel-only --dtypes int4 --tokens 1 --iters 10 --ab "[{$G:\"int4\"}]" > "$OUT/nsys.log" 2>&1
  stamp nsys $?
  timeout 15 "$NSYS" stats -r cuda_gpu_trace -f csv -o "$OUT/nsys_int4_t1" "$OUT/nsys_int4_t1.nsys-rep" >> "$OUT/nsys.log" 2>&1
  stamp "nsys stats" $?
  rm -f "$OUT/nsys_int4_t1.nsys-rep" "$OUT/nsys_int4_t1.sqlite"
  xz -T4 "$OUT"/nsys_int4_t1*.csv 2>/dev/null
else
  echo "no nsys" >> "$OUT/summary.txt"
fi
grep -h "kernel-only" "$OUT"/ab_*.log "$OUT"/gemv_stages.log >> "$OUT/summary.txt"
echo "all done after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
