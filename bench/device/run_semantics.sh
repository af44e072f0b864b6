#!/usr/bin/env bash
# The CUDA spec run of the families' semantics (packed by bench/device/pack_semantics.sh), from the project root on
# the GPU machine: OUT=... bash <dir>/run.sh. Every CUDA spec and a small compute-sanitizer memcheck set run side by
# side, each under its own timeout (SPECS_TIMEOUT, MEMCHECK_TIMEOUT), so the whole run ends within ~2.5 minutes.
set -uo pipefail
[ -f .device/env.sh ] && source .device/env.sh >/dev/null
D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
W=$(mktemp -d)
xz -dc "$D/tfjs_moe_cuda.node.xz" > "$W/tfjs_moe_cuda.node"
tar -xJf "$D/payload.tar.xz" -C "$W"
export TFJS_MOE_CUDA_ADDON=$W/tfjs_moe_cuda.node TFJS_MOE_FAMILY_TABLE=$OUT/families.json
cd "$W"
timeout ${SPECS_TIMEOUT:-125} node run-specs.mjs > "$OUT/specs.log" 2>&1 &
specs=$!
(cd memcheck && TFJS_MOE_SPEC_SCALE=small TFJS_MOE_FAMILY_TABLE= timeout ${MEMCHECK_TIMEOUT:-125} \
    compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 node run-specs.mjs > "$OUT/memcheck.log" 2>&1)
echo "memcheck exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
wait $specs; echo "specs exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
grep -E 'passed, .* failed' "$OUT/specs.log" | sed 's/^/specs: /' >> "$OUT/summary.txt"
grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" | sed 's/^/memcheck: /' >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
grep -E '^(FAILED|SUITE FAILURE|GLOBAL FAILURE)' "$OUT/specs.log" | head -20
grep -E '========= (Invalid|Program hit)' "$OUT/memcheck.log" | head -5
sed -n '/cuda executor vs transformers/,/^$/p' "$OUT/specs.log" | head -40
grep -E '^  (cuda|FusedMoE \[cuda|op conformance)' "$OUT/specs.log" | head -40
rm -rf "$W"
