#!/usr/bin/env bash
# The CUDA spec run of the families' semantics (packed by bench/device/pack_semantics.sh), from the project root on
# the GPU machine: OUT=... bash <dir>/run.sh. Every payload's CUDA specs run side by side, with the memcheck set of
# the last payload (MEMCHECK=0: none) under compute-sanitizer, each under its own timeout (SPECS_TIMEOUT,
# MEMCHECK_TIMEOUT), then the first payload's semantics benchmark alone (BENCH_TIMEOUT, BENCH_ARGS), so the whole
# run ends within ~2.5 minutes. Logs: $OUT/<label>/specs.log, memcheck.log.
set -uo pipefail
[ -f .device/env.sh ] && source .device/env.sh >/dev/null
D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
W=$(mktemp -d)
xz -dc "$D/tfjs_moe_cuda.node.xz" > "$W/tfjs_moe_cuda.node"
export TFJS_MOE_CUDA_ADDON=$W/tfjs_moe_cuda.node
payloads=("$D"/payload-*.tar.xz)
pids=()
for p in "${payloads[@]}"; do
  label=$(basename "$p" .tar.xz); label=${label#payload-}
  mkdir -p "$W/$label" "$OUT/$label" && tar -xJf "$p" -C "$W/$label"
  (cd "$W/$label" && TFJS_MOE_FAMILY_TABLE=$OUT/$label/families.json timeout ${SPECS_TIMEOUT:-100} \
      node run-specs.mjs > "$OUT/$label/specs.log" 2>&1; echo "$label specs exit $? after $(( $(date +%s) - start )) s" \
      >> "$OUT/summary.txt") &
  pids+=($!)
done
if [ "${MEMCHECK:-1}" != 0 ]; then
  (cd "$W/$label/memcheck" && TFJS_MOE_SPEC_SCALE=small timeout ${MEMCHECK_TIMEOUT:-100} compute-sanitizer \
      --tool memcheck --leak-check no --error-exitcode 3 node run-specs.mjs > "$OUT/$label/memcheck.log" 2>&1
   echo "$label memcheck exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt")
fi
wait "${pids[@]}"
# Then, alone on the GPU, the semantics benchmark of the first payload (BENCH=0: none).
first=$(basename "${payloads[0]}" .tar.xz); first=${first#payload-}
if [ "${BENCH:-1}" != 0 ]; then
  (cd "$W/$first" && timeout ${BENCH_TIMEOUT:-40} node cuda_semantics_bench.mjs ${BENCH_ARGS:-} --out "$OUT/$first/semantics_bench.json" \
      > "$OUT/$first/semantics_bench.log" 2>&1; echo "$first bench exit $? after $(( $(date +%s) - start )) s" >> "$OUT/summary.txt")
fi
for p in "${payloads[@]}"; do
  label=$(basename "$p" .tar.xz); label=${label#payload-}
  echo "$label: $(cat "$W/$label/commit.txt")" >> "$OUT/summary.txt"
  grep -E 'passed, .* failed' "$OUT/$label/specs.log" | sed "s/^/$label specs: /" >> "$OUT/summary.txt"
  [ -f "$OUT/$label/memcheck.log" ] && grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/$label/memcheck.log" | \
      sed "s/^/$label memcheck: /" >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
for p in "${payloads[@]}"; do
  label=$(basename "$p" .tar.xz); label=${label#payload-}
  echo "=== $label"
  grep -E '^(FAILED|SUITE FAILURE|GLOBAL FAILURE)' "$OUT/$label/specs.log" | head -10
  [ -f "$OUT/$label/memcheck.log" ] && grep -E '========= (Invalid|Program hit)' "$OUT/$label/memcheck.log" | head -5
  sed -n '/cuda executor vs transformers/,/^$/p' "$OUT/$label/specs.log" | head -32
  grep -E '^  (cuda (native|MoeTopkSelect|FusedMoE|on tensorflow)|FusedMoE \[cuda)' "$OUT/$label/specs.log" | head -20
done
[ -f "$OUT/$first/semantics_bench.log" ] && grep -v '^{' "$OUT/$first/semantics_bench.log" | tail -12
rm -rf "$W"
