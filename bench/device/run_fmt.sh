#!/usr/bin/env bash
# The cudafmt GPU batch (packed by bench/device/pack_fmt.sh): cwd = the batch folder, $OUT = results.
# Steps: specs (int8 / mxfp4 + int4 + decode GEMM suites), cuda_bench kernel-only bf16 / int8 / int8-g32 / mxfp4 / int4 at
# T = 1, 16, 256, 4096 with A/B ($AB): the dequantized copy (TFJS_MOE_CUDA_FORMATS=copy), the packed tiles up to 8 rows
# per expert on every grid ('mma8'), 64-deep 16 x 64 int8 stages (MOE_CUDA_GEMM_TILES 'shallow'); batch O ran 'mma96',
# 'mma8' and 'deep'. Then memcheck of the same spec set.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
xz -dc addon.xz > /tmp/cudafmt_addon.node
W=/tmp/cudafmt_run; rm -rf "$W"; mkdir -p "$W"; xz -dc bundle.tar.xz | tar -C "$W" -xf -
cp commit.txt "$W/" 2>/dev/null; cd "$W"
export TFJS_MOE_CUDA_ADDON=/tmp/cudafmt_addon.node
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
cp commit.txt "$OUT/" 2>/dev/null
echo "=== specs $(date +%T)"
timeout 70 node run-specs.mjs > "$OUT/specs.log" 2>&1
grep -E 'FAILED|passed, ' "$OUT/specs.log" | head -20
echo "=== bench $(date +%T)"
AB_DEFAULT='[{"env:TFJS_MOE_CUDA_FORMATS": "copy"}, {"env:TFJS_MOE_CUDA_FORMATS": "mma8"}, {"MOE_CUDA_GEMM_TILES": "shallow"}]'
AB=${AB:-$AB_DEFAULT}
timeout 150 node build/spec/cuda_bench.js --kernel-only --dtypes bfloat16,int8,int8-g32,mxfp4,int4 --tokens 1,16,256,4096 \
    --ab "$AB" \
    --out "$OUT/cudafmt_s6_${BATCH:-P}.json" > "$OUT/bench.log" 2>&1
grep -E '^kernel-only' "$OUT/bench.log"
tail -3 "$OUT/bench.log"
echo "=== memcheck $(date +%T)"
TFJS_MOE_SPEC_SCALE=small timeout 75 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 \
    node run-specs.mjs > "$OUT/memcheck.log" 2>&1
echo "compute-sanitizer exit code $?"
grep -E 'ERROR SUMMARY|passed, .* failed|========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -12
echo "=== done $(date +%T)"
