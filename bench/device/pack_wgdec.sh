#!/usr/bin/env bash
# Packs the wgdec (WebGPU decode) GPU batch into DEST (default /work/main/.device/run/wgdec): one tar.xz with the
# decode bench bundled from src, the decode spec set (wgdec_specs.ts, tfjs-moe = ./dist/esm) with a jasmine runner,
# and run_wgdec.sh as run.sh (webgpu and onnxruntime resolve from the runner's .device/node_modules).
# Run from the worktree root after `node scripts/build.mjs`.
set -euo pipefail
DEST=${1:-/work/main/.device/run/wgdec}
rm -rf "$DEST" && mkdir -p "$DEST"
S=$(mktemp -d)
mkdir -p "$S/build/spec"
echo '{"type": "module"}' > "$S/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --minify --platform=node --format=esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu --external:onnxruntime-node --external:onnxruntime-common "--external:*.node")
$ESB bench/webgpu_decode_bench.ts "${common[@]}" --outfile="$S/webgpu_decode_bench.mjs"
$ESB wgdec.spec=bench/device/wgdec_specs.ts "${common[@]}" --alias:tfjs-moe=./dist/esm --outdir="$S/build/spec"
$ESB bench/device/wgdec_run_specs.mjs "${common[@]}" --outfile="$S/run-specs.mjs"
cp -r node_modules/jasmine-core/lib/jasmine-core "$S/jasmine-core"
tar -C "$S" -cf - package.json build run-specs.mjs jasmine-core webgpu_decode_bench.mjs | xz -9e -T2 > "$DEST/bundle.tar.xz"
rm -rf "$S"
cp bench/device/run_wgdec.sh "$DEST/run.sh"
{ git log --oneline -1; git diff --stat HEAD; } > "$DEST/commit.txt"
du -sh "$DEST"
