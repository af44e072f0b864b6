#!/usr/bin/env bash
# Packs a final GPU run (issues 15 and 16: every CUDA spec, memcheck, ours per format, vLLM, torch, end to end, the
# WebGPU benches with ORT's QMoE in the same process) into DEST (default .device/final) as one payload.tar.xz and
# run.sh (bench/device/run_final.sh). From the repository root, after `node scripts/build.mjs`, an sm_90 addon build
# (TFJS_MOE_CUDA_ARCHS=90 node scripts/build-cuda.mjs; ADDON= another path) and `bash ../shared/device/prepare.sh`.
# The runner's modules (dawn.node, onnxruntime-node) go in .device/modules.tar.xz (compressed: the carry is 64 MiB);
# VLLM=<dir> adds a vLLM harness kept outside the repository (its bench_vllm.py is run if present).
set -euo pipefail
DEST=${1:-.device/final}
ADDON=${ADDON:-build/Release/tfjs_moe_cuda.node}
rm -rf "$DEST" && mkdir -p "$DEST"
P=$(mktemp -d)
mkdir -p "$P/build/spec" "$P/memcheck/build/spec" "$P/spec/fixtures" "$P/webgpu"
cp "$ADDON" "$P/tfjs_moe_cuda.node"
echo '{"type": "module"}' > "$P/package.json"
echo '{"type": "module"}' > "$P/memcheck/package.json"
ESB=node_modules/.bin/esbuild
BANNER="import {createRequire as __cr} from 'module'; import {fileURLToPath as __fu} from 'url'; import {dirname as __dn} from 'path'; const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
common=(--bundle --platform=node --format=esm --alias:tfjs-moe=./dist/esm --log-level=warning "--banner:js=$BANNER"
        --external:webgpu "--external:*.node" --external:onnxruntime-node --external:onnxruntime-common --minify)
$ESB bench/device/device_specs.ts "${common[@]}" --outfile="$P/build/spec/cuda_device.spec.js"
$ESB bench/device/memcheck_specs.ts "${common[@]}" --outfile="$P/memcheck/build/spec/cuda_memcheck.spec.js"
$ESB scripts/run-specs.mjs "${common[@]}" --outfile="$P/run-specs.mjs"
cp "$P/run-specs.mjs" "$P/memcheck/"
$ESB bench/cuda_bench.ts "${common[@]}" --outfile="$P/cuda_bench.mjs"
# One build with a shared chunk (tfjs once).
$ESB bench/webgpu_qmoe_bench.ts bench/webgpu_decode_bench.ts "${common[@]}" --splitting \
  --out-extension:.js=.mjs --chunk-names=chunks/[name]-[hash] --outdir="$P/webgpu"
echo '{"type": "module"}' > "$P/webgpu/package.json"
cp -r node_modules/jasmine-core/lib/jasmine-core "$P/jasmine-core"
cp -r "$P/jasmine-core" "$P/memcheck/"
cp spec/fixtures/*.json "$P/spec/fixtures/"
cp bench/torch_baseline.py "$P/"
[ -n "${VLLM:-}" ] && [ -d "$VLLM" ] && cp -r "$VLLM" "$P/vllm"
git log --oneline -1 > "$P/commit.txt"
git status --short >> "$P/commit.txt"
tar -C "$P" -cf - . | xz -T2 -9 > "$DEST/payload.tar.xz"
rm -rf "$P"
cp bench/device/run_final.sh "$DEST/run.sh"
du -sh "$DEST" .device
