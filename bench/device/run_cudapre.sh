#!/usr/bin/env bash
# The cudapre GPU batch (packed by `SPECS=bench/device/cudapre_specs.ts RUN=bench/device/run_cudapre.sh
# bash bench/device/pack_fmt.sh DEST`): cwd = the batch folder, $OUT = results. Steps: specs (cudapre_specs.ts),
# cuda_bench kernel-only int4 at T = 256 with the int4 tile A/B ($AB, each variant's stage profile; the default
# repeated between variants: the bench's position bias), ncu of the int4 GEMMs at T = 256 ($NCU_VARIANTS: the default
# and NAME=VALUE settings), then memcheck of the spec set ($MEMCHECK=1).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
xz -dc addon.xz > /tmp/cudapre_addon.node
W=/tmp/cudapre_run; rm -rf "$W"; mkdir -p "$W"; xz -dc bundle.tar.xz | tar -C "$W" -xf -
cp commit.txt "$W/" 2>/dev/null; cd "$W"
export TFJS_MOE_CUDA_ADDON=/tmp/cudapre_addon.node
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cp commit.txt "$OUT/" 2>/dev/null
BATCH=${BATCH:-A}
echo "=== specs $(date +%T)"
timeout ${SPEC_S:-25} node run-specs.mjs > "$OUT/specs.log" 2>&1
grep -E 'FAILED|passed, ' "$OUT/specs.log" | head -20
echo "=== bench $(date +%T)"
t() { echo "{\"env:TFJS_MOE_CUDA_INT4_TILES\": \"$1\"}"; }
p() { echo "{\"env:TFJS_MOE_CUDA_CODE_PREFETCH\": \"$1\"}"; }
pk() { echo "{\"env:TFJS_MOE_CUDA_CODE_PREFETCH\": \"$1\", \"env:TFJS_MOE_CUDA_INT4_TILES\": \"$2\"}"; }
AB_DEFAULT="[$(p 256), $(t k128), $(pk 256 k128), $(p 128), $(t w8), $(t s6), $(t wide), $(t 16x64), {\"env:TFJS_MOE_CUDA_WGMMA_INT4\": \"1\"}, {}, $(pk 256 k128), $(t wide), $(t s6), $(t w8), $(p 128), $(t k128), $(p 256), {}]"
AB=${AB:-$AB_DEFAULT}
timeout ${BENCH_S:-45} node build/spec/cuda_bench.js --kernel-only --ab-stages --dtypes ${DTYPES:-int4} --tokens ${TOKENS:-256} \
    --ab "$AB" --out "$OUT/cuda_bench_s7_cudapre_${BATCH}.json" > "$OUT/bench.log" 2>&1
grep -E '^kernel-only' "$OUT/bench.log"
tail -2 "$OUT/bench.log"
# $NCU_VARIANTS: 'default' or NAME=VALUE environment settings, one ncu run each.
for v in ${NCU_VARIANTS:-default TFJS_MOE_CUDA_CODE_PREFETCH=256}; do
  echo "=== ncu $v $(date +%T)"
  tag=${v//[^A-Za-z0-9]/_}
  ( [ "$v" != default ] && export "$v"
  timeout ${NCU_S:-35} ncu --clock-control none -k regex:mmaGemmKernel --launch-count 2 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section Occupancy --section SchedulerStats --section WarpStateStats \
      --section LaunchStats --section ComputeWorkloadAnalysis node build/spec/cuda_bench.js --kernel-only --ncu \
      --dtypes int4 --tokens 256 > "$OUT/ncu_int4_256_$tag.txt" 2>&1 )
  grep -E 'mmaGemmKernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|Achieved Occupancy|No Eligible|Warp Cycles Per Issued|Registers Per' "$OUT/ncu_int4_256_$tag.txt" | head -40
done
if [ "${MEMCHECK:-0}" = 1 ]; then
  echo "=== memcheck $(date +%T)"
  TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_S:-60} compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
      node run-specs.mjs > "$OUT/memcheck.log" 2>&1
  echo "compute-sanitizer exit code $?"
  grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12
fi
echo "=== done $(date +%T)"
