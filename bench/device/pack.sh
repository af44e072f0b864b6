#!/usr/bin/env bash
# Packs what the GPU run needs into DEST (default /work/main/.dev-cuda): the addon, bundled specs with a
# jasmine runner, the benchmarks and run.sh. Run from the worktree root after `npm run build` and
# `npm run build:cuda` (TFJS_MOE_CUDA_ARCHS=90 is enough for the H100 run).
set -euo pipefail
DEST=${1:-/work/main/.dev-cuda}
mkdir -p "$DEST/build/spec"
cp build/Release/tfjs_moe_cuda.node "$DEST/"
echo '{"type": "module"}' > "$DEST/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --platform=node --format=esm --alias:tfjs-moe=./dist/esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node")
$ESB bench/device/device_specs.ts "${common[@]}" --outfile="$DEST/build/spec/cuda_device.spec.js"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$DEST/run-specs.mjs"
$ESB bench/cuda_bench.ts "${common[@]}" --outfile="$DEST/cuda_bench.mjs"
# jasmine-core lists its own files next to where it runs
rm -rf "$DEST/jasmine-core" && cp -r node_modules/jasmine-core/lib/jasmine-core "$DEST/jasmine-core"
cp bench/torch_baseline.py bench/device/run.sh bench/device/run_quick.sh bench/device/run_e2e.sh "$DEST/"
# A small spec set for compute-sanitizer (the end-to-end spec: staging, pinned blocks, device activations)
mkdir -p "$DEST/memcheck/build/spec"
echo '{"type": "module"}' > "$DEST/memcheck/package.json"
$ESB bench/device/memcheck_specs.ts "${common[@]}" --outfile="$DEST/memcheck/build/spec/cuda_memcheck.spec.js"
cp "$DEST/run-specs.mjs" "$DEST/memcheck/" && rm -rf "$DEST/memcheck/jasmine-core" && cp -r "$DEST/jasmine-core" "$DEST/memcheck/"
# The family fixtures (device_specs.ts runs the families' specs), read from spec/fixtures relative to the working directory.
mkdir -p "$DEST/spec/fixtures" && cp spec/fixtures/*.json "$DEST/spec/fixtures/"
git log --oneline -1 > "$DEST/commit.txt"
du -sh "$DEST"
