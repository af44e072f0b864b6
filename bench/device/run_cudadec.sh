#!/usr/bin/env bash
# The cudadec lane's GPU batch (session 9): the layer at T = 1 and 16 for bf16 and int4, the decode front and combine
# switches A/B'd against the shipped default in one process (rounds interleaved), the decode spec set (tiles' and
# decode GEMM specs first, the new switches checked against the default bit for bit and the float64 reference),
# compute-sanitizer memcheck of the tiles' spec, nsys of the one-token graph (kernel durations and
# the gaps between them) where time is left. Every step under its own timeout, cut to what LANE_BUDGET leaves; logs
# under $OUT as they go.
# AB (a JSON list of --ab flag sets, one round) overrides the variants; SPECS=0 skips the spec and memcheck steps;
# NCU_FRONT=1 adds ncu of the decode front and combine kernels (bf16, T = 1 and 16; default, then the routing +
# permute block and the combine tail). run_cudadec_b2.sh sets them for the second batch.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
# Unpacked outside the (carried) batch folder.
WORK=/tmp/cudadec
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
[ -n "${ROOT:-}" ] && [ -f "$ROOT/.device/env.sh" ] && source "$ROOT/.device/env.sh" >/dev/null 2>&1
start=$(date +%s)
budget=${LANE_BUDGET:-100}
left() { echo $(( budget - ($(date +%s) - start) - 3 )); }
# step timeout: min(want, what is left); 0 when too little is left
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 8 ? l : 0 )) || echo "$1"; }
stamp() { echo "$1 exit $2 at $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"; }
tar xJf "$HERE/payload.tar.xz"
export TFJS_MOE_CUDA_ADDON=$PWD/tfjs_moe_cuda.node
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt" 2>&1
cat commit.txt >> "$OUT/summary.txt"

FR='"env:TFJS_MOE_CUDA_DECODE_FRONT"'; C='"env:TFJS_MOE_CUDA_DECODE_COMBINE"'; G='"env:TFJS_MOE_CUDA_DECODE_GRID"'
FU='"MOE_CUDA_FUSE"'
# {} = the shipped default (routing and permute kernels, the combine kernel); the routing + permute block, the
# combine tail, both; the session-3 fused route kernel (alone, with the tail); the opt-in atomic combine (alone, with
# the routing + permute block); the tail on row-first grids.
ROUND=${AB:-"{},{$FR:\"route2\"},{$C:\"tail\"},{$FR:\"route2\",$C:\"tail\"},{$FU:\"route\"},{$FU:\"route\",$C:\"tail\"},{$C:\"add\"},{$FR:\"route2\",$C:\"add\"},{$C:\"tail\",$G:\"rows\"}"}
t=$(cap 45)
[ "$t" -gt 0 ] && timeout "$t" node cuda_bench.mjs --kernel-only --dtypes bfloat16,int4 --tokens 1,16 --iters 30 \
    --ab "[$ROUND,$ROUND,$ROUND]" --out "$OUT/ab.json" 2>&1 | grep -v "^{" > "$OUT/ab.log"; stamp ab ${PIPESTATUS[0]}
# One line per dtype, T and flag set: the median over the rounds of the graph-replay kernel ms (ab.log has each).
[ -f "$OUT/ab.json" ] && node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
const g = {};
for (const x of r) { const k = `${x.dtype} T=${x.T} ${JSON.stringify(x.flags || {})}`; (g[k] = g[k] || []).push(x.kernelGraphMs); }
for (const [k, v] of Object.entries(g)) { v.sort((a, b) => a - b); console.log(`${k}: ${v[v.length >> 1].toFixed(4)} (${v.map(t => t.toFixed(4)).join(" ")})`); }
' "$OUT/ab.json" >> "$OUT/summary.txt" 2>&1

NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
if [ "${NCU_FRONT:-0}" = 1 ] && [ -n "$NCU" ]; then
  K='regex:denseFewRows|topkSelect|permuteSmall|decodeRoute|combine|mmaGemmKernel'
  for v in default route2-tail; do
    t=$(cap 30)
    [ "$t" -gt 10 ] || break
    env_set=()
    [ "$v" = route2-tail ] && env_set=(TFJS_MOE_CUDA_DECODE_FRONT=route2 TFJS_MOE_CUDA_DECODE_COMBINE=tail)
    env "${env_set[@]}" timeout "$t" "$NCU" --clock-control none -k "$K" --section SpeedOfLight --section LaunchStats \
        --section Occupancy node cuda_bench.mjs --ncu --kernel-only --dtypes bfloat16 --tokens 1,16 > "$OUT/ncu_$v.txt" 2>&1
    stamp "ncu $v" $?
    grep -E "^  [a-zA-Z_]+.*\(|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Grid Size|Block Size" \
        "$OUT/ncu_$v.txt" > "$OUT/ncu_${v}_short.txt"
  done
fi

if [ "${SPECS:-1}" = 1 ]; then
t=$(cap 22); CUDADEC_SPECS='decode tiles|decode weight-streaming' SPEC_TIMING=1 timeout "$t" node run-specs.mjs \
    > "$OUT/specs.log" 2>&1; stamp specs $?
grep -E 'passed, .* failed|FAILED|Expected|T [0-9]|^  \[' "$OUT/specs.log" | head -30 >> "$OUT/summary.txt"


t=$(cap 18)
if [ "$t" -gt 0 ]; then
  CUDADEC_SPECS='decode tiles' TFJS_MOE_SPEC_SCALE=small timeout "$t" compute-sanitizer --tool memcheck --leak-check no \
      --error-exitcode 3 node run-specs.mjs > "$OUT/memcheck.log" 2>&1; stamp memcheck $?
  grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" >> "$OUT/summary.txt"
fi
fi

# Kernel durations and the gaps between them inside the one-token graph replay (default, then route2 + tail), where
# nsys exists.
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
t=$(cap 25)
if [ -n "$NSYS" ] && [ "$t" -gt 12 ]; then
  timeout "$t" "$NSYS" profile --cuda-graph-trace=node -t cuda -o "$OUT/nsys_t1" --force-overwrite true \
      node cuda_bench.mjs --kernel-only --dtypes bfloat16,int4 --tokens 1 --iters 10 \
      --ab "[{$FR:\"route2\",$C:\"tail\"}]" > "$OUT/nsys.log" 2>&1
  stamp nsys $?
  t=$(cap 15)
  [ "$t" -gt 0 ] && timeout "$t" "$NSYS" stats -r cuda_gpu_trace -f csv -o "$OUT/nsys_t1" "$OUT/nsys_t1.nsys-rep" >> "$OUT/nsys.log" 2>&1
  stamp "nsys stats" $?
  rm -f "$OUT/nsys_t1.nsys-rep" "$OUT/nsys_t1.sqlite"
  xz -T4 "$OUT"/nsys_t1*.csv 2>/dev/null
fi
echo "all done after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
