#!/usr/bin/env bash
# The cudapre GPU batch (packed by `SPECS=bench/device/cudapre_specs.ts MEMCHECK_SPECS=bench/device/cudapre_memcheck_specs.ts
# RUN=bench/device/run_cudapre.sh bash bench/device/pack_fmt.sh DEST`): cwd = the batch folder, $OUT = results. Steps:
# specs (cudapre_specs.ts), cuda_bench kernel-only ($DTYPES at $TOKENS) with the A/B variants $AB (each variant's stage
# profile; the previous defaults repeated between the new ones: the bench's position bias), ncu of the int4 GEMMs at
# T = 256 for each of $NCU_VARIANTS ('default' or NAME=VALUE; none unless set), then memcheck of cudapre_memcheck_specs.ts.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
xz -dc addon.xz > /tmp/cudapre_addon.node
W=/tmp/cudapre_run; rm -rf "$W"; mkdir -p "$W"; xz -dc bundle.tar.xz | tar -C "$W" -xf -
cp commit.txt "$W/" 2>/dev/null; cd "$W"
export TFJS_MOE_CUDA_ADDON=/tmp/cudapre_addon.node
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cp commit.txt "$OUT/" 2>/dev/null
BATCH=${BATCH:-B}
echo "=== specs $(date +%T)"
timeout ${SPEC_S:-55} node run-specs.mjs build/spec/cuda_fmt.spec.js > "$OUT/specs.log" 2>&1
grep -E 'FAILED|passed, ' "$OUT/specs.log" | head -20
echo "=== bench $(date +%T)"
# 'old' = the int4 32 x 128 tiles and code loads of session 6; 'nopf' = the new tiles without the code prefetch.
old='{"env:TFJS_MOE_CUDA_INT4_TILES": "k64", "env:TFJS_MOE_CUDA_CODE_PREFETCH": "0"}'
nopf='{"env:TFJS_MOE_CUDA_CODE_PREFETCH": "0"}'
# int8 / mxfp4: their codes up to 96 rows per expert with the 64-deep / 128-deep 32 x 128 tiles (the default: the copy).
m96='{"env:TFJS_MOE_CUDA_FORMATS": "mma96"}'
deep='{"env:TFJS_MOE_CUDA_FORMATS": "mma96deep"}'
AB=${AB:-"[$old, $deep, {}, $nopf, $old, $m96, {}, $deep, $old, {}]"}
timeout ${BENCH_S:-60} node build/spec/cuda_bench.js --kernel-only --ab-stages --dtypes ${DTYPES:-int8,mxfp4,int4} --tokens ${TOKENS:-256,4096} \
    --ab "$AB" --out "$OUT/cuda_bench_s7_cudapre_${BATCH}.json" > "$OUT/bench.log" 2>&1
grep -E '^kernel-only' "$OUT/bench.log"
tail -2 "$OUT/bench.log"
for v in ${NCU_VARIANTS:-}; do
  echo "=== ncu $v $(date +%T)"
  tag=${v//[^A-Za-z0-9]/_}
  ( [ "$v" != default ] && export "$v"
  timeout ${NCU_S:-35} ncu --clock-control none -k regex:mmaGemmKernel --launch-count 2 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section Occupancy --section SchedulerStats --section WarpStateStats \
      --section LaunchStats --section ComputeWorkloadAnalysis node build/spec/cuda_bench.js --kernel-only --ncu \
      --dtypes int4 --tokens 256 > "$OUT/ncu_int4_256_$tag.txt" 2>&1 )
  grep -E 'mmaGemmKernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|Achieved Occupancy|No Eligible|Warp Cycles Per Issued|Registers Per' "$OUT/ncu_int4_256_$tag.txt" | head -40
done
echo "=== memcheck $(date +%T)"
TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_S:-35} compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    node run-specs.mjs build/spec/cuda_memcheck.spec.js > "$OUT/memcheck.log" 2>&1
echo "compute-sanitizer exit code $?"
grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12
echo "=== done $(date +%T)"
