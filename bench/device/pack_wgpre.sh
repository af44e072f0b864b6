#!/usr/bin/env bash
# Packs the wgpre (WebGPU prefill) GPU batch into DEST (default /work/main/.device/run/wgpre): the matrix A/B bench
# and the formats bench with ORT's QMoE, bundled from src (webgpu and onnxruntime resolve from the runner's
# .device/node_modules), and RUN (default bench/device/run_wgpre.sh; the wgtile lane's: run_wgtile.sh) as run.sh.
# Run from the worktree root: bench/device/pack_wgpre.sh [DEST [RUN]].
set -euo pipefail
DEST=${1:-/work/main/.device/run/wgpre}
RUN=${2:-bench/device/run_wgpre.sh}
mkdir -p "$DEST" && rm -rf "$DEST"/*.mjs "$DEST/chunks" "$DEST/run.sh" "$DEST/READY"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --minify --platform=node --format=esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu --external:onnxruntime-node --external:onnxruntime-common "--external:*.node")
# One build with a shared chunk (tfjs once): the folder stays under 3 MB.
rm -rf "$DEST/chunks"
$ESB bench/webgpu_matrix_ab.ts bench/webgpu_qmoe_bench.ts bench/webgpu_prefill_bench.ts "${common[@]}" --splitting \
  --out-extension:.js=.mjs --chunk-names=chunks/[name]-[hash] --outdir="$DEST"
cp "$RUN" "$DEST/run.sh"
git log --oneline -1 > "$DEST/commit.txt"
git diff --stat HEAD >> "$DEST/commit.txt"
du -sh "$DEST"
