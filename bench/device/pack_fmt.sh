#!/usr/bin/env bash
# Packs the cudafmt GPU batch into DEST (default /work/main/.device/batch/cudafmt): the addon (xz), the native-format
# spec set (fmt_specs.ts) with a jasmine runner, the int8-only memcheck set, cuda_bench and run_fmt.sh as run.sh.
# Run from the worktree root after `node scripts/build.mjs` and `TFJS_MOE_CUDA_ARCHS=90 node scripts/build-cuda.mjs`.
# Other batches reuse it: SPECS= another spec set, RUN= another run script, ADDON= another addon path (cudapre:
# SPECS=bench/device/cudapre_specs.ts MEMCHECK_SPECS=bench/device/cudapre_memcheck_specs.ts RUN=bench/device/run_cudapre.sh).
set -euo pipefail
DEST=${1:-/work/main/.device/batch/cudafmt}
# As small as it goes: the stripped addon (xz -9e; 3.9 MB since the mxfp4 tiles) and one tar.xz of the minified
# bundles (one spec set for specs and memcheck).
rm -rf "$DEST" && mkdir -p "$DEST"
S=$(mktemp -d)
mkdir -p "$S/build/spec"
strip --strip-unneeded -o "$S/addon.node" "${ADDON:-build/Release/tfjs_moe_cuda.node}"
xz -9e -T2 -c "$S/addon.node" > "$DEST/addon.xz"
echo '{"type": "module"}' > "$S/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --minify --platform=node --format=esm --alias:tfjs-moe=./dist/esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node")
# The spec set and the benchmark share one chunk of their common modules (tfjs, tfjs-moe).
# MEMCHECK_SPECS= a second, smaller spec set for the memcheck step (build/spec/cuda_memcheck.spec.js: the run script
# selects a set with run-specs.mjs's file filter).
extra=(); [ -n "${MEMCHECK_SPECS:-}" ] && extra=(cuda_memcheck.spec="$MEMCHECK_SPECS")
$ESB cuda_fmt.spec="${SPECS:-bench/device/fmt_specs.ts}" "${extra[@]}" cuda_bench=bench/cuda_bench.ts "${common[@]}" --splitting \
    --outdir="$S/build/spec"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$S/run-specs.mjs"
cp -r node_modules/jasmine-core/lib/jasmine-core "$S/jasmine-core"
tar -C "$S" -cf - package.json build run-specs.mjs jasmine-core | xz -9e -T2 > "$DEST/bundle.tar.xz"
rm -rf "$S"
cp "${RUN:-bench/device/run_fmt.sh}" "$DEST/run.sh"
git log --oneline -1 > "$DEST/commit.txt"
du -sh "$DEST"
