#!/usr/bin/env bash
# The wgpre GPU batch (packed by bench/device/pack_wgpre.sh), run from the repo root: $OUT = results.
# Within LANE_BUDGET: 1. the formats bench with ORT's QMoE (the session-7 final command) through the FusedMoE
# layer (the replayed prefill path, BENCH_LAYER_FORWARD=1), with the layer under the session-7 presets and
# tf.matMul's router in the same process (BENCH_LAYER_AB, BENCH_ROUTER_AB=0); 2. in the time left,
# webgpu_matrix_ab at T = 256: the tile table against the session-7 presets and the serial-epilogue candidates,
# every output vs float64 (AB_ROUTER: also the router's split-K vs tf.matMul).
set -uo pipefail
OUT=${OUT:-/tmp/out}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
cp "$HERE/commit.txt" "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
# LANE_BUDGET (s): the formats bench first (the layer numbers), then the matrix A/B in what is left.
BUDGET=${LANE_BUDGET:-70}
T0=$(date +%s)
echo "=== formats bench + ORT $(date +%T)"
mkdir -p "$OUT/qmoe"
OUT=$OUT/qmoe BENCH_HALF_MATRICES=1 BENCH_PRESETS=0 BENCH_FORMATS="${QMOE_FORMATS:-int4 g32,float16}" BENCH_LAYER_FORWARD=${QMOE_LAYER_FORWARD:-1} BENCH_T=${QMOE_T:-256,4096} \
  BENCH_ORT_FORMATS="int4 g32" BENCH_ROUTER_AB=0 BENCH_LAYER_AB="${QMOE_LAYER_AB:-int4 g32=m32x128s4eru:0;float16=m32x128s4er:0}" timeout ${QMOE_TIMEOUT:-$((BUDGET * 6 / 10))} node "$HERE/webgpu_qmoe_bench.mjs" > "$OUT/qmoe/stdout.log" 2>&1
echo "exit $?"
node -e "const d=JSON.parse(require('fs').readFileSync('$OUT/qmoe/webgpu_formats_bench.json','utf8'));for(const r of d.rows){const h=r.half||{};console.log(r.format,r.T,'half layer',h.layer&&h.layer.toFixed(3),'gpu',h.layerGpuMs&&h.layerGpuMs.toFixed(3),'gemms gpu',h.gemmsGpuMs&&h.gemmsGpuMs.toFixed(3),'ort',r.ortMs&&r.ortMs.toFixed(2),'A/B',JSON.stringify(h.routerAb))}" 2>&1 | cut -c1-700
LEFT=$((BUDGET - 4 - $(date +%s) + T0))
echo "=== matrix A/B $(date +%T), ${LEFT} s left"
mkdir -p "$OUT/ab"
if [ "$LEFT" -gt 8 ]; then
OUT=$OUT/ab AB_FORMATS=${AB_FORMATS:-'int4 g32,float16'} AB_T=256 AB_ROUNDS=${AB_ROUNDS:-5} AB_ROUTER=${AB_ROUTER:-} \
  AB_VARIANTS=${AB_VARIANTS:-'256:table,m32x128s4eru,m32x128s4er,m32x256s8srul,m32x128s4sr2ul,m32x256s8sr2u'} \
  timeout $LEFT node "$HERE/webgpu_matrix_ab.mjs" > "$OUT/ab/stdout.log" 2>&1
echo "exit $?"
grep -E 'gemms [0-9]|layer|check' "$OUT/ab/stdout.log" | cut -c1-240
fi
echo "=== done $(date +%T)"
