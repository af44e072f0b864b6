#!/usr/bin/env bash
# Packs the end-to-end GPU run (issue 16 item 4) into DEST: the addon of this tree and, when BEFORE names one, an
# addon to compare with (both in one xz stream: they share their device code), the e2e spec subset and the
# memcheck set with a jasmine runner, the benchmark, run_e2e_batch.sh as run.sh. From the worktree root after
# `node scripts/build.mjs` and the CUDA build.
set -euo pipefail
DEST=${1:?usage: pack_e2e.sh DEST}
ADDON=${ADDON:-build/Release/tfjs_moe_cuda.node}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/p/specs/build/spec" "$W/p/memcheck/build/spec" "$W/a"
echo '{"type": "module"}' | tee "$W/p/package.json" "$W/p/specs/package.json" > "$W/p/memcheck/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --platform=node --format=esm --alias:tfjs-moe=./dist/esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node")
# SPECS_ENTRY: the spec subset (default e2e_specs.ts; e2e_changed_specs.ts: the copy paths and the layer only).
$ESB bench/device/${SPECS_ENTRY:-e2e_specs.ts} "${common[@]}" --outfile="$W/p/specs/build/spec/cuda_e2e.spec.js"
mkdir -p "$W/p/layer_specs/build/spec"
echo '{"type": "module"}' > "$W/p/layer_specs/package.json"
$ESB bench/device/e2e_layer_specs.ts "${common[@]}" --outfile="$W/p/layer_specs/build/spec/cuda_e2e_layer.spec.js"
# MEMCHECK_SPECS: the memcheck entry (default memcheck_specs.ts; e2e_memcheck_specs.ts: the host copies and
# activations only).
$ESB bench/device/${MEMCHECK_SPECS:-memcheck_specs.ts} "${common[@]}" --outfile="$W/p/memcheck/build/spec/cuda_memcheck.spec.js"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$W/p/specs/run-specs.mjs"
cp "$W/p/specs/run-specs.mjs" "$W/p/memcheck/"
cp "$W/p/specs/run-specs.mjs" "$W/p/layer_specs/"
cp -r node_modules/jasmine-core/lib/jasmine-core "$W/p/layer_specs/jasmine-core"
cp -r node_modules/jasmine-core/lib/jasmine-core "$W/p/specs/jasmine-core"
cp -r node_modules/jasmine-core/lib/jasmine-core "$W/p/memcheck/jasmine-core"
$ESB bench/cuda_bench.ts "${common[@]}" --outfile="$W/p/cuda_bench.mjs"
# DEVICE_SPECS=1: every CUDA spec (device_specs.ts) as two bundles run side by side (the layer conformance spec,
# the slowest, alone in one), for the batch step devspecs; their family fixtures are read relative to the folder.
if [ "${DEVICE_SPECS:-0}" = 1 ]; then
  trap 'rm -rf "$W" bench/device/.devspecs_*.ts' EXIT
  grep -v "cuda_fused_moe.spec" bench/device/device_specs.ts > bench/device/.devspecs_rest.ts
  grep -v -E "^import '\.\./\.\./spec/cuda/|^import '\./device_status" bench/device/device_specs.ts > bench/device/.devspecs_layer.ts
  echo "import '../../spec/cuda/cuda_fused_moe.spec.js';" >> bench/device/.devspecs_layer.ts
  for part in rest layer; do
    mkdir -p "$W/p/dev_$part/build/spec" "$W/p/dev_$part/spec/fixtures"
    echo '{"type": "module"}' > "$W/p/dev_$part/package.json"
    $ESB bench/device/.devspecs_$part.ts "${common[@]}" --outfile="$W/p/dev_$part/build/spec/cuda_device_$part.spec.js"
    cp "$W/p/specs/run-specs.mjs" "$W/p/dev_$part/"
    cp -r node_modules/jasmine-core/lib/jasmine-core "$W/p/dev_$part/jasmine-core"
    cp spec/fixtures/*.json "$W/p/dev_$part/spec/fixtures/"
  done
fi
cp bench/device/cpuprof_summary.py "$W/p/"
git log --oneline -1 > "$W/p/commit.txt"
cp "$ADDON" "$W/a/after.node"
[ -n "${BEFORE:-}" ] && cp "$BEFORE" "$W/a/before.node"
mkdir -p "$DEST"
tar -C "$W/a" -cf - . | xz -9e -T2 > "$DEST/addons.tar.xz"
tar -C "$W/p" -cf - . | xz -9 -T2 > "$DEST/pack.tar.xz"
# run.sh: the batch with the STEPS / MODES / ROUNDS / *_TIMEOUT given to this script baked in as its defaults.
cp bench/device/run_e2e_batch.sh "$DEST/batch.sh"
{
  echo '#!/usr/bin/env bash'
  for v in STEPS MODES ROUNDS STACK_MODES LAYER_MODES SPECS_TIMEOUT MEMCHECK_TIMEOUT AFTER_TIMEOUT MALLOC_TIMEOUT PROF_TIMEOUT SPEC_TIMING; do
    [ -n "${!v:-}" ] && echo "export $v=\${$v:-'${!v}'}"
  done
  echo 'exec bash "$(dirname "$0")/batch.sh" "$@"'
} > "$DEST/run.sh"
du -sh "$DEST" "$DEST"/*
