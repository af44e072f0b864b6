#!/usr/bin/env bash
# The cuda256 GPU batch (session 9, issue 16 item 1 at T = 256 / 4096; packed by `SPECS=bench/device/cuda256_specs.ts
# MEMCHECK_SPECS=bench/device/cuda256_more_specs.ts RUN=bench/device/run_cuda256.sh ADDON=... bash
# bench/device/pack_fmt.sh DEST`): the packed files next to this script, $OUT = results, LANE_BUDGET = seconds for
# all of it. Steps, the most important first: cuda_bench kernel-only A/B ($AB: the split-K reduction kernel, the PDL
# front, the previous tile table s7; the default repeated between variants: the bench's position bias; batch B2 ran
# the table now shipped as the variant 's9' against the previous one as the default), the lane's spec
# set (build/spec/cuda_fmt.spec.js) plain and under compute-sanitizer memcheck, the second set
# (build/spec/cuda_memcheck.spec.js: wgmma layer suite, op kernels) plain, then ncu of one forward at T = 256.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
T0=$(date +%s)
BUDGET=${LANE_BUDGET:-100}
left() { echo $(( BUDGET - ($(date +%s) - T0) - 3 )); }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
HERE=$(cd "$(dirname "$0")" && pwd)  # the lane folder (the runner's cwd is the repository root)
mkdir -p /tmp/cuda256
xz -dc "$HERE/addon.xz" > /tmp/cuda256/tfjs_moe_cuda.node
W=/tmp/cuda256/run; rm -rf "$W"; mkdir -p "$W"; xz -dc "$HERE/bundle.tar.xz" | tar -C "$W" -xf -
cp "$HERE/commit.txt" "$W/" 2>/dev/null; cd "$W"
export TFJS_MOE_CUDA_ADDON=/tmp/cuda256/tfjs_moe_cuda.node
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cp commit.txt "$OUT/" 2>/dev/null
BATCH=${BATCH:-B2}
D='{}'
K='"env:TFJS_MOE_CUDA_GATE_REDUCE": "kernel"'
P='"env:TFJS_MOE_CUDA_PDL_FRONT": "1"'
S7='"env:TFJS_MOE_CUDA_SM90_TABLE": "s7"'
AB=${AB:-"[{$K}, {$S7}, {$P}, {$S7, $K}, $D, {$K}, {$S7}, {$P}, $D, {$S7}, {$P}, $D]"}
echo "=== bench $(date +%T)"
timeout $(cap ${BENCH_S:-32}) node build/spec/cuda_bench.js --kernel-only --ab-stages --iters 40 --dtypes ${DTYPES:-bfloat16,int4} \
    --tokens ${TOKENS:-256,4096} --ab "$AB" --out "$OUT/cuda_bench_s9_cuda256_${BATCH}.json" < /dev/null > "$OUT/bench.log" 2>&1
echo "bench exit $?"
grep -E '^kernel-only' "$OUT/bench.log" | sed -E 's/, (convert\/latent|combine\/latent|shared experts) [0-9.]*//g; s/env:TFJS_MOE_CUDA_//g'
tail -2 "$OUT/bench.log"
echo "=== specs $(date +%T)"
SPEC_TIMING=suite timeout $(cap ${SPEC_S:-22}) node run-specs.mjs build/spec/cuda_fmt.spec.js < /dev/null > "$OUT/specs.log" 2>&1
echo "specs exit $?"
grep -E 'FAILED|passed, |Error' "$OUT/specs.log" | head -20
echo "=== memcheck $(date +%T)"
TFJS_MOE_SPEC_SCALE=small timeout $(cap ${MEMCHECK_S:-22}) compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    node run-specs.mjs build/spec/cuda_fmt.spec.js < /dev/null > "$OUT/memcheck.log" 2>&1
echo "compute-sanitizer exit code $?"
grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12
echo "=== more specs $(date +%T)"
SPEC_TIMING=suite timeout $(cap ${MORE_S:-20}) node run-specs.mjs build/spec/cuda_memcheck.spec.js < /dev/null > "$OUT/specs_more.log" 2>&1
echo "more specs exit $?"
grep -E 'FAILED|passed, |Error' "$OUT/specs_more.log" | head -20
# ncu: one forward at T = 256, bf16, default and the previous tile table: the expert GEMMs' DRAM / L2 throughput.
NCU_RUNS=${NCU_RUNS:-"default - wgmmaGemmKernel 2
s7 TFJS_MOE_CUDA_SM90_TABLE=s7 wgmmaGemmKernel 2"}
while read -r tag env regex count; do
  [ -z "$tag" ] && continue
  [ "$(left)" -lt 10 ] && { echo "ncu $tag skipped (time)"; continue; }
  echo "=== ncu $tag $(date +%T)"
  ( [ "$env" != - ] && export "$env"
  timeout $(cap ${NCU_S:-12}) ncu --clock-control none -k "regex:$regex" --launch-count "$count" --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats node build/spec/cuda_bench.js \
      --kernel-only --ncu --dtypes bfloat16 --tokens 256 < /dev/null > "$OUT/ncu_256_$tag.txt" 2>&1 )
  grep -E 'wgmmaGemmKernel|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\)|L2 Hit|No Eligible|Warp Cycles Per Issued' \
      "$OUT/ncu_256_$tag.txt" | cut -c1-150 | head -$(( 10 * count ))
done <<< "$NCU_RUNS"
echo "=== done $(date +%T), $(( $(date +%s) - T0 )) s"
