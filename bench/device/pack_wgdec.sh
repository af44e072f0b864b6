#!/usr/bin/env bash
# Packs the wgdec (WebGPU decode) GPU batch into DEST (default /work/gpu/ready/wgdec): the decode bench bundled
# from src (webgpu and onnxruntime resolve from the runner's .device/node_modules) and run_wgdec.sh as run.sh.
# Run from the worktree root.
set -euo pipefail
DEST=${1:-/work/gpu/ready/wgdec}
rm -rf "$DEST" && mkdir -p "$DEST"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --minify --platform=node --format=esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu --external:onnxruntime-node --external:onnxruntime-common "--external:*.node")
$ESB bench/webgpu_decode_bench.ts "${common[@]}" --outfile="$DEST/webgpu_decode_bench.mjs"
$ESB bench/webgpu_stream_probe.ts "${common[@]}" --outfile="$DEST/webgpu_stream_probe.mjs"
cp bench/device/run_wgdec.sh "$DEST/run.sh"
echo "${BUDGET:-120}" > "$DEST/budget"
git log --oneline -1 > "$DEST/commit.txt"
git diff --stat HEAD >> "$DEST/commit.txt"
du -sh "$DEST"
