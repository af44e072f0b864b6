#!/usr/bin/env bash
# The wgdec GPU batch (packed by bench/device/pack_wgdec.sh): cwd = the batch folder, $OUT = results.
# The decode bench: the float64 checks, int4 g32 and float16 at T = 1 and 16 with the session-7 candidates
# (BENCH_CANDIDATES=s7: interleaved rounds, every other one reversed; each candidate's output vs float64 for int4);
# then the stream probe if time is left.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cp commit.txt "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
echo "=== decode bench $(date +%T)"
OUT=$OUT BENCH_T= BENCH_LARGE_T= BENCH_STACK=0 BENCH_ENTRIES=0 BENCH_PACKED='int4 g32,float16,bfloat16' BENCH_PACKED_T=16,1 \
  BENCH_PACKED_T_REST=16 BENCH_PACKED_SWEEP=3 BENCH_CANDIDATES=s7 BENCH_TAG=${BATCH:-s7_wgdec} \
  timeout ${DECODE_TIMEOUT:-65} node webgpu_decode_bench.mjs > "$OUT/decode_bench.log" 2>&1
echo "exit $?"
grep -E 'packed|vs float64' "$OUT/decode_bench.log" | cut -c1-3000 | tail -8
echo "=== stream probe $(date +%T)"
OUT=$OUT BENCH_ONLY=${PROBE_ONLY:-s7b} timeout ${PROBE_TIMEOUT:-15} node webgpu_stream_probe.mjs > "$OUT/stream_probe.log" 2>&1
echo "exit $?"
tail -8 "$OUT/stream_probe.log" | cut -c1-300
echo "=== done $(date +%T)"
