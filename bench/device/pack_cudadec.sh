#!/usr/bin/env bash
# Packs the cudadec lane's GPU batch into DEST: the addon (xz), the decode spec set (CUDADEC_SPECS picks a subset, see
# cudadec_specs.ts) with a jasmine runner, the layer benchmark, all in one payload.tar.xz (the batch folder's size cap is 3 MB), and RUN (a
# run script from bench/device/) as run.sh, which unpacks it. From the worktree root, after an addon build
# (ADDON=<dir>/tfjs_moe_cuda.node; an nvcc wrapper adding --compress-mode=none packs smaller). The package is bundled
# from TFJS_MOE_SRC (default ./dist/esm, after `node scripts/build.mjs`; ./src bundles the sources directly).
set -euo pipefail
DEST=${1:?dest}
RUN=${2:?run script}
ADDON=${ADDON:-build/Release/tfjs_moe_cuda.node}
SRC=${TFJS_MOE_SRC:-./dist/esm}
rm -rf "$DEST" && mkdir -p "$DEST"
P=$(mktemp -d)
mkdir -p "$P/build/spec"
cp "$ADDON" "$P/tfjs_moe_cuda.node"
echo '{"type": "module"}' > "$P/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --platform=node --format=esm "--alias:tfjs-moe=$SRC" --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node" --external:onnxruntime-node --minify)
$ESB bench/device/cudadec_specs.ts "${common[@]}" --outfile="$P/build/spec/cudadec.spec.js"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$P/run-specs.mjs"
$ESB bench/cuda_bench.ts "${common[@]}" --outfile="$P/cuda_bench.mjs"
cp -r node_modules/jasmine-core/lib/jasmine-core "$P/jasmine-core"
git log --oneline -1 > "$P/commit.txt"
git status --short >> "$P/commit.txt"
[ -n "${NOTE:-}" ] && echo "$NOTE" >> "$P/commit.txt"
tar -C "$P" -cf - . | xz -T2 -9 > "$DEST/payload.tar.xz"
rm -rf "$P"
cp "$RUN" "$DEST/run.sh"
du -sh "$DEST"
