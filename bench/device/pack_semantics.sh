#!/usr/bin/env bash
# Packs the CUDA spec run of the families' semantics into DEST (default /work/main/.device/batch/cudasem) as
# payload-LABEL.tar.xz (default LABEL: the branch name): the bundled CUDA specs (device_specs.ts: every CUDA spec),
# a small compute-sanitizer set (memcheck_semantics_specs.ts), the fixtures, bench/cuda_semantics_bench.ts; plus the addon (xz, shared by every
# payload of DEST: pack payloads of the same native code only) and run_semantics.sh as run.sh. DEST is kept, so
# several payloads (e.g. this branch and a merge of it) run side by side. Run from the worktree root after
# `node scripts/build.mjs` and `TFJS_MOE_CUDA_ARCHS=90 node scripts/build-cuda.mjs` (ADDON= another addon path).
set -euo pipefail
DEST=${1:-/work/main/.device/batch/cudasem}
LABEL=${2:-$(git rev-parse --abbrev-ref HEAD)}
ADDON=${ADDON:-build/Release/tfjs_moe_cuda.node}
mkdir -p "$DEST"
xz -T2 -c "$ADDON" > "$DEST/tfjs_moe_cuda.node.xz"
# Everything else goes into one payload (the batch folder must stay under 4 MB).
P=$(mktemp -d)
mkdir -p "$P/build/spec" "$P/memcheck/build/spec"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --platform=node --format=esm --alias:tfjs-moe=./dist/esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node")
for d in "$P" "$P/memcheck"; do echo '{"type": "module"}' > "$d/package.json"; done
$ESB bench/device/device_specs.ts "${common[@]}" --outfile="$P/build/spec/cuda_device.spec.js"
$ESB bench/device/memcheck_semantics_specs.ts "${common[@]}" --outfile="$P/memcheck/build/spec/cuda_memcheck.spec.js"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$P/run-specs.mjs"
$ESB bench/cuda_semantics_bench.ts "${common[@]}" --outfile="$P/cuda_semantics_bench.mjs"
cp "$P/run-specs.mjs" "$P/memcheck/"
# jasmine-core lists its own files next to where it runs
for d in "$P" "$P/memcheck"; do cp -r node_modules/jasmine-core/lib/jasmine-core "$d/jasmine-core"; done
# The fixtures, read from spec/fixtures relative to the working directory (both runs' directories).
for d in "$P" "$P/memcheck"; do mkdir -p "$d/spec/fixtures" && cp spec/fixtures/*.json "$d/spec/fixtures/"; done
git log --oneline -1 > "$P/commit.txt"
tar -cJf "$DEST/payload-$LABEL.tar.xz" -C "$P" .
rm -rf "$P"
cp bench/device/run_semantics.sh "$DEST/run.sh"
du -sh "$DEST"
