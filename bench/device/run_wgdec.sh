#!/usr/bin/env bash
# The wgdec GPU batch (packed by bench/device/pack_wgdec.sh), run as `OUT=... ROOT=... bash .device/run/wgdec/run.sh`.
# Steps: the decode spec set (vs float64 on the H200's WebGPU adapter), then the decode bench: int4 g32 at T = 16
# and 1, float16 / bfloat16 at T = 16 (FORMATS=), with a session's candidates (CANDS, default s9: BENCH_CANDIDATES;
# S9=b: session 9's confirmation set; s8 with S8=b: session 8's), interleaved rounds, each int4 candidate's output
# vs float64.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-$(cd "$HERE/../../.." && pwd)}
W=/tmp/wgdec_run; rm -rf "$W"; mkdir -p "$W"; xz -dc "$HERE/bundle.tar.xz" | tar -C "$W" -xf -
# ESM resolution of the externals (webgpu, onnxruntime-node) from the runner's modules.
ln -s "$ROOT/.device/node_modules" "$W/node_modules"
cp "$HERE/commit.txt" "$OUT/" 2>/dev/null
# The batch's settings (FORMATS, CANDS, S8, SPEC_TIMEOUT, DECODE_TIMEOUT, ...), if the folder has them.
[ -f "$HERE/batch.env" ] && . "$HERE/batch.env"
cd "$W"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
# Steps within LANE_BUDGET (the lead's limit for the whole script): the specs first, the bench gets the rest.
BUDGET=${LANE_BUDGET:-100}
START=$SECONDS
if [ "${SPEC_TIMEOUT:-30}" != 0 ]; then
  echo "=== specs $(date +%T)"
  SPEC_FILTER=${SPEC_FILTER:-} timeout ${SPEC_TIMEOUT:-30} node run-specs.mjs > "$OUT/specs.log" 2>&1
  echo "exit $?"
  grep -E 'failed:|pending:|passed, ' "$OUT/specs.log" | head -12
  grep -E 'webgpu decode packed: .*(unit|unchecked|router)' "$OUT/specs.log" | head -6
fi
echo "=== decode bench $(date +%T)"
OUT=$OUT BENCH_T= BENCH_LARGE_T= BENCH_STACK=0 BENCH_ENTRIES=0 BENCH_PACKED=${FORMATS:-'int4 g32,float16,bfloat16'} \
  BENCH_PACKED_T=16,1 BENCH_PACKED_T_REST=16 BENCH_PACKED_SWEEP=5 BENCH_CANDIDATES=${CANDS:-s9} BENCH_S8=${S8:-} BENCH_S9=${S9:-} BENCH_ORT=${ORT:-} BENCH_TAG=${BATCH:-s9_wgdec} \
  timeout $(( ${DECODE_TIMEOUT:-62} < BUDGET - (SECONDS - START) - 6 ? ${DECODE_TIMEOUT:-62} : BUDGET - (SECONDS - START) - 6 )) \
  node webgpu_decode_bench.mjs > "$OUT/decode_bench.log" 2>&1
echo "exit $?"
node -e '
const fs = require("fs");
for (const line of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
  const m = line.match(/packed (.*?) T=(\d+) (\{.*\})$/);
  if (!m) continue;
  const r = JSON.parse(m[3]);
  const pp = v => v.perProgram ? " [" + Object.values(v.perProgram).map(x => x.toFixed(3)).join(" ") + "]" : "";
  const sw = Object.entries(r.tileSweep ?? {}).map(([k, v]) => `${k} ${v.thr.toFixed(4)}/${v.gpu.toFixed(4)}` +
      (v.relL2VsFloat64 != null ? ` e${v.relL2VsFloat64.toExponential(1)}` : "") + pp(v)).join(", ");
  console.log(`${m[1]} T=${m[2]} thr ${r.after?.throughputMs?.toFixed(4)} gpu ${r.gpuWholeForwardMs?.toFixed(4)} err ${r.relL2VsFloat64?.toExponential(2) ?? "-"} | ${sw}`);
}' "$OUT/decode_bench.log" 2>&1 | cut -c1-1500
echo "=== done $(date +%T)"
