#!/usr/bin/env bash
# The cudapre GPU batch (packed by `SPECS=bench/device/cudapre_specs.ts MEMCHECK_SPECS=bench/device/cudapre_memcheck_specs.ts
# RUN=bench/device/run_cudapre.sh bash bench/device/pack_fmt.sh DEST`): the packed files next to this script, $OUT =
# results, LANE_BUDGET = seconds for all of it. Steps: specs (cudapre_specs.ts), cuda_bench kernel-only ($DTYPES at
# $TOKENS) with the A/B variants $AB (each variant's stage profile; the default repeated between variants: the
# bench's position bias), compute-sanitizer memcheck of cudapre_memcheck_specs.ts, then ncu runs ($NCU_RUNS: 'tag env
# regex launches' lines, one forward at T = 4096 each) while time is left.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
T0=$(date +%s)
BUDGET=${LANE_BUDGET:-100}
left() { echo $(( BUDGET - ($(date +%s) - T0) - 3 )); }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
HERE=$(cd "$(dirname "$0")" && pwd)  # the lane folder (the runner's cwd is the repository root)
xz -dc "$HERE/addon.xz" > /tmp/cudapre_addon.node
W=/tmp/cudapre_run; rm -rf "$W"; mkdir -p "$W"; xz -dc "$HERE/bundle.tar.xz" | tar -C "$W" -xf -
cp "$HERE/commit.txt" "$W/" 2>/dev/null; cd "$W"
export TFJS_MOE_CUDA_ADDON=/tmp/cudapre_addon.node
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cp commit.txt "$OUT/" 2>/dev/null
BATCH=${BATCH:-B2}
echo "=== specs $(date +%T)"
timeout $(cap ${SPEC_S:-25}) node run-specs.mjs build/spec/cuda_fmt.spec.js \
    < /dev/null > "$OUT/specs.log" 2>&1
echo "specs exit $?"
grep -E 'FAILED|passed, |Error' "$OUT/specs.log" | head -20
echo "=== bench $(date +%T)"
D='{}'
R='{"env:TFJS_MOE_CUDA_DENSE_F32": "tf32x3-regs"}'
S64='{"env:TFJS_MOE_CUDA_GATE_SPLIT_MAX": "64"}'
P0='{"env:TFJS_MOE_CUDA_PERMUTE_VEC": "0"}'
# OLD: session 7's kernels (register-staged router tiles, 64 K slices, scalar permute loads); the default: this session's.
OLD='{"env:TFJS_MOE_CUDA_DENSE_F32": "tf32x3-regs", "env:TFJS_MOE_CUDA_GATE_SPLIT_MAX": "64", "env:TFJS_MOE_CUDA_PERMUTE_VEC": "0"}'
# (batch B2 also ran {"env:TFJS_MOE_CUDA_ZERO_SIDE": "2"}, a side-stream zeroing since removed: BENCHMARKS.md)
AB=${AB:-"[$OLD, $R, $S64, $P0, $D, $OLD, $P0, $D]"}
timeout $(cap ${BENCH_S:-30}) node build/spec/cuda_bench.js --kernel-only --ab-stages --dtypes ${DTYPES:-bfloat16,int4} \
    --tokens ${TOKENS:-4096,256} --ab "$AB" --out "$OUT/cuda_bench_s8_cudapre_${BATCH}.json" < /dev/null > "$OUT/bench.log" 2>&1
echo "bench exit $?"
grep -E '^kernel-only' "$OUT/bench.log" | sed -E 's/, (convert\/latent|combine\/latent|shared experts) [0-9.]*//g'
tail -2 "$OUT/bench.log"
echo "=== memcheck $(date +%T)"
TFJS_MOE_SPEC_SCALE=small timeout $(cap ${MEMCHECK_S:-20}) compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    node run-specs.mjs build/spec/cuda_memcheck.spec.js < /dev/null > "$OUT/memcheck.log" 2>&1
echo "compute-sanitizer exit code $?"
grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12
NCU_RUNS=${NCU_RUNS:-"default - denseF32|splitKReduce|topkSelect|moeScores|permute|wgmmaGemmKernel 6"}
while read -r tag env regex count; do
  [ -z "$tag" ] && continue
  [ "$(left)" -lt 12 ] && { echo "ncu $tag skipped (time)"; continue; }
  echo "=== ncu $tag $(date +%T)"
  ( [ "$env" != - ] && export "$env"
  timeout $(cap ${NCU_S:-15}) ncu --clock-control none -k "regex:$regex" --launch-count "$count" --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats node build/spec/cuda_bench.js \
      --kernel-only --ncu --dtypes bfloat16 --tokens 4096 < /dev/null > "$OUT/ncu_4096_$tag.txt" 2>&1 )
  grep -E 'wgmmaGemmKernel|denseF32|splitKReduce|topkSelect|moeScores|permute|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\)|L2 Hit|Issue Slots Busy|No Eligible|Warp Cycles Per Issued' \
      "$OUT/ncu_4096_$tag.txt" | cut -c1-150 | head -$(( 10 * count ))
done <<< "$NCU_RUNS"
echo "=== done $(date +%T), $(( $(date +%s) - T0 )) s"
