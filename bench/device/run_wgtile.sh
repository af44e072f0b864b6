#!/usr/bin/env bash
# The wgtile GPU batch (packed by `bench/device/pack_wgpre.sh DEST bench/device/run_wgtile.sh`), run from the repo
# root: $OUT = results. Within LANE_BUDGET, most important first: 1. webgpu_matrix_ab at T = 256 for bfloat16 and
# int8 (g128, per column): the two expert GEMMs under the table against session 7's m16x128s4h and the
# serial-epilogue presets, every output vs float64 (batch B1 ran commit c4fe669, with candidates that lost and are
# dropped since); 2. the formats bench through the FusedMoE layer (the replayed prefill path) for those formats at
# T = 256, with m16x128s4h in the same process (BENCH_LAYER_AB); 3. the matrix A/B of the tiles for int4 g32 and
# float16, with the per-program layer times (what the small programs outside the GEMMs cost); 4. in what is
# left, the layer bench for int4 g32 and float16.
set -uo pipefail
OUT=${OUT:-/tmp/out}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
cp "$HERE/commit.txt" "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
BUDGET=${LANE_BUDGET:-170}
T0=$(date +%s)
left() { echo $((BUDGET - 6 - $(date +%s) + T0)); }
# min(wanted, what is left)
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
ab() {  # ab DIR TIMEOUT: webgpu_matrix_ab with the caller's AB_* env
  mkdir -p "$OUT/$1"
  OUT=$OUT/$1 AB_T=256 timeout "$2" node "$HERE/webgpu_matrix_ab.mjs" > "$OUT/$1/stdout.log" 2>&1
  echo "exit $?"
  grep -E 'gemms [0-9]|layer|check|error' "$OUT/$1/stdout.log" | cut -c1-300
}
layer() {  # layer DIR TIMEOUT FORMATS LAYER_AB
  mkdir -p "$OUT/$1"
  OUT=$OUT/$1 BENCH_ORT=0 BENCH_HALF_MATRICES=1 BENCH_PRESETS=0 BENCH_FORMATS="$3" BENCH_LAYER_FORWARD=1 BENCH_T=256 \
    BENCH_ROUTER_AB= BENCH_LAYER_AB="$4" timeout "$2" node "$HERE/webgpu_qmoe_bench.mjs" > "$OUT/$1/stdout.log" 2>&1
  echo "exit $?"
  node -e "const d=JSON.parse(require('fs').readFileSync('$OUT/$1/webgpu_formats_bench.json','utf8'));for(const r of d.rows){const h=r.half||{};console.log(r.format,r.T,'exact layer',r.layer&&r.layer.ms&&r.layer.ms.toFixed(3),'half layer',h.layer&&h.layer.toFixed(3),'gpu',h.layerGpuMs&&h.layerGpuMs.toFixed(3),'gemms gpu',h.gemmsGpuMs&&h.gemmsGpuMs.toFixed(3),'vs exact',h.relDiffVsExact,'A/B',JSON.stringify(h.routerAb),r.error||h.error||'')}" 2>&1 | cut -c1-900
}

echo "=== 1. matrix A/B bfloat16, int8 $(date +%T), $(left) s left"
AB_FORMATS=${AB1_FORMATS:-'bfloat16,int8 g128,int8'} AB_ROUNDS=${AB_ROUNDS:-7} AB_LAYER=1 \
  AB_VARIANTS=${AB1_VARIANTS:-'256:table,m16x128s4h,m32x256s8sru,m32x256s8srul,m32x256s8sr2ul'} \
  ab ab_bf16_int8 "$(cap ${AB1_TIMEOUT:-70})"

L=$(left); echo "=== 2. layer bench bfloat16, int8 $(date +%T), $L s left"
[ "$L" -gt 15 ] && layer layer_bf16_int8 "$(cap ${LAYER1_TIMEOUT:-55})" 'bfloat16,int8 g128,int8' \
  'bfloat16=m16x128s4h:0;int8 g128=m16x128s4h:0;int8=m16x128s4h:0'

L=$(left); echo "=== 3. matrix A/B int4 g32, float16 $(date +%T), $L s left"
[ "$L" -gt 12 ] && AB_FORMATS='int4 g32,float16' AB_ROUNDS=${AB_ROUNDS:-7} AB_LAYER=1 \
  AB_VARIANTS=${AB3_VARIANTS:-'256:table,m32x256s8sru,m32x128s4sr2u,m32x256s8srul,m32x256s8sr2ul'} \
  ab ab_int4_f16 "$(cap ${AB3_TIMEOUT:-40})"

L=$(left); echo "=== 4. layer bench int4 g32, float16 $(date +%T), $L s left"
[ "$L" -gt 15 ] && layer layer_int4_f16 "$L" 'int4 g32,float16' ''
echo "=== done $(date +%T)"
