#!/usr/bin/env bash
# The end-to-end GPU batch (issue 16 item 4), packed by pack_e2e.sh. From the project root:
# OUT=... bash .device/run/e2e/run.sh. Every step under `timeout`, clipped to what is left of BUDGET seconds.
# Steps (STEPS): specs (the e2e CUDA subset + the memcheck set, side by side; specsonly / memcheck: one of them), after (this tree's addon: the
# copy modes, the layer paths, a 4-layer stack), malloc (the same with TFJS_MOE_CUDA_MALLOC_REUSE=1), before (the
# comparison addon, same benchmark and device code), layer (the layer conformance on the cuda executor), gc
# (--trace-gc at T = 4096; not in the default list), prof (the layer paths at T = 1 under --cpu-prof, summarised by
# cpuprof_summary.py; not in the default list), mallocspecs (the specs step again with
# TFJS_MOE_CUDA_MALLOC_REUSE=1: is the opt-in allocator switch correct; not in the default list), devspecs (every
# CUDA spec in two processes + the memcheck set, side by side; packed with DEVICE_SPECS=1). MODES: the copy
# modes of after / malloc. copymemcpy: after's benchmark with TFJS_MOE_CUDA_DEVICE_COPY=memcpy (the device-resident
# forward's copies as cudaMemcpyAsync, as before session 5); mainlike: also TFJS_MOE_CUDA_POOL_KEEP_MIB=0 (main's
# host behaviour, without a second addon in the folder). oldhost: after's benchmark without session 6's host
# defaults (TFJS_MOE_CUDA_HUGEPAGES=0 TFJS_MOE_CUDA_COPY_STORES=plain). ROUNDS: after's modes repeated, interleaved;
# STACK_MODES: after's device-stack A/B switches (cuda_bench --stack-modes); LAYER_MODES: after's layer-path A/B
# switches (cuda_bench --layer-modes).
set -uo pipefail
BUDGET=${BUDGET:-${LANE_BUDGET:-86}}
T0=$(date +%s)
D=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out-e2e}
mkdir -p "$OUT"
[ -f .device/env.sh ] && source .device/env.sh >/dev/null 2>&1
W=$(mktemp -d /tmp/e2e-batch.XXXX)
xz -dc "$D/pack.tar.xz" | tar -C "$W" -xf -
xz -dc "$D/addons.tar.xz" | tar -C "$W" -xf -
S="$OUT/summary.txt"
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
lim() { local want=$1 l; l=$(( $(left) - 2 )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }
note() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$S"; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  echo "nproc $(nproc); node $(node --version); kernel $(uname -r); $(ldd --version 2>&1 | head -1)"
  echo "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
  cat "$W/commit.txt"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$S"
cd "$W"
bench() {  # label, addon, timeout, args... (env before the call applies)
  local label=$1 addon=$2 t; t=$(lim "$3"); shift 3
  TFJS_MOE_CUDA_ADDON="$W/$addon" timeout "$t" node ${NODE_FLAGS:-} cuda_bench.mjs "$@" --out "$OUT/bench_$label.json" \
      > "$OUT/bench_$label.log" 2>&1
  note "bench $label exit $? (limit $t)"
  grep -v '^{' "$OUT/bench_$label.log" | grep -v -e '^===' -e 'Hi, looks like' -e '^$' | tail -40 >> "$S"
}
specs() {  # folder, timeout, label (env before the call applies)
  local t; t=$(lim "$2")
  (cd "$1" && TFJS_MOE_CUDA_ADDON="$W/after.node" SPEC_TIMING=${SPEC_TIMING:-1} timeout "$t" node run-specs.mjs \
       > "$OUT/$3.log" 2>&1
   note "$3 exit $? (limit $t)")
  grep -E 'passed, .* failed' "$OUT/$3.log" | sed "s/^/$3: /" >> "$S"
  grep -E '^FAILED|^SUITE FAILURE|^GLOBAL' "$OUT/$3.log" | head -20 >> "$S"
  grep -q -E 'passed, .* failed' "$OUT/$3.log" || tail -3 "$OUT/$3.log" | sed "s/^/$3 (cut): /" >> "$S"
}
memcheck() {  # timeout, log label: the memcheck spec set under compute-sanitizer
  (cd memcheck && TFJS_MOE_CUDA_ADDON="$W/after.node" TFJS_MOE_SPEC_SCALE=small SPEC_TIMING=${SPEC_TIMING:-1} \
      timeout "$1" compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 node run-specs.mjs \
      > "$OUT/$2.log" 2>&1
   note "$2 exit $?")
  grep -E 'ERROR SUMMARY|passed, .* failed|^FAILED' "$OUT/$2.log" | head -10 | sed "s/^/$2: /" >> "$S"
  grep -q -E 'passed, .* failed' "$OUT/$2.log" || tail -3 "$OUT/$2.log" | sed "s/^/$2 (cut): /" >> "$S"
}
MODES=${MODES:-staged,pageable,pinnedIn,trace,oldSplit,registerIn,registerOut,registerInOut,slice128}
for step in ${STEPS:-specs after malloc before layer}; do
  [ "$(left)" -le 4 ] && { note "out of budget before $step"; break; }
  case $step in
    specsonly) specs specs ${SPECS_TIMEOUT:-26} specs ;;  # the e2e spec subset alone (no memcheck beside it)
    memcheck) memcheck "$(lim ${MEMCHECK_TIMEOUT:-26})" memcheck ;;
    specs|mallocspecs)
      p=; [ $step = mallocspecs ] && { p=malloc_; export TFJS_MOE_CUDA_MALLOC_REUSE=1; }
      specs specs ${SPECS_TIMEOUT:-26} ${p}specs &
      a=$!
      memcheck "$(lim ${SPECS_TIMEOUT:-26})" ${p}memcheck &
      b=$!
      wait $a $b
      unset TFJS_MOE_CUDA_MALLOC_REUSE ;;
    after) bench after after.node ${AFTER_TIMEOUT:-18} --dtypes bfloat16 --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 \
        --modes $MODES --rounds ${ROUNDS:-1} ${STACK_MODES:+--stack-modes $STACK_MODES} \
        ${LAYER_MODES:+--layer-modes $LAYER_MODES} ;;
    mainlike) TFJS_MOE_CUDA_DEVICE_COPY=memcpy TFJS_MOE_CUDA_POOL_KEEP_MIB=0 bench mainlike after.node ${AFTER_TIMEOUT:-18} \
        --dtypes bfloat16 --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 --modes staged ;;
    oldhost) TFJS_MOE_CUDA_HUGEPAGES=0 TFJS_MOE_CUDA_COPY_STORES=plain bench oldhost after.node ${AFTER_TIMEOUT:-18} \
        --dtypes bfloat16 --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 --modes staged ;;
    copymemcpy) TFJS_MOE_CUDA_DEVICE_COPY=memcpy bench copymemcpy after.node ${AFTER_TIMEOUT:-18} --dtypes bfloat16 \
        --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 --modes staged ;;
    malloc) TFJS_MOE_CUDA_MALLOC_REUSE=1 bench malloc after.node ${MALLOC_TIMEOUT:-16} --dtypes bfloat16 \
        --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 --modes $MODES ;;
    before) [ -f before.node ] && bench before before.node ${BEFORE_TIMEOUT:-12} --dtypes bfloat16 --tokens 1,16,256,4096 \
        --e2e-iters 10 --stack 4 --modes staged,pageable ;;
    layer) specs layer_specs ${LAYER_TIMEOUT:-40} layer_specs ;;
    devspecs)  # every CUDA spec (packed with DEVICE_SPECS=1) in two processes, and the memcheck set, side by side
      specs dev_rest ${SPECS_TIMEOUT:-90} device_specs_rest &
      a=$!
      specs dev_layer ${SPECS_TIMEOUT:-90} device_specs_layer &
      b=$!
      memcheck "$(lim ${SPECS_TIMEOUT:-90})" memcheck &
      c=$!
      wait $a $b $c ;;
    prof)  # the layer paths at T = 1 under V8's sampling profiler: the summary of the samples under Layer.apply
      t=$(lim ${PROF_TIMEOUT:-12}); mkdir -p "$W/prof"
      TFJS_MOE_CUDA_ADDON="$W/after.node" timeout "$t" node --cpu-prof --cpu-prof-dir="$W/prof" --cpu-prof-interval 50 \
          cuda_bench.mjs --dtypes bfloat16 --tokens 1 --e2e-iters 500 --stack 1 --modes split --layer-modes default \
          --layer-warmup 400 --out "$OUT/bench_prof.json" > "$OUT/bench_prof.log" 2>&1
      note "prof exit $? (limit $t)"
      for f in "$W"/prof/*.cpuprofile; do
        [ -f "$f" ] && python3 cpuprof_summary.py "$f" Layer.apply 60 > "$OUT/prof_summary.txt" 2>&1
      done
      head -40 "$OUT/prof_summary.txt" >> "$S" 2>/dev/null ;;
    gc) NODE_FLAGS=--trace-gc bench gc after.node ${GC_TIMEOUT:-8} --dtypes bfloat16 --tokens 4096 --e2e-iters 10 --stack 1 \
        --modes staged
        grep -c -E 'Scavenge|Mark-Compact|Mark-sweep' "$OUT/bench_gc.log" | sed 's/^/gc lines: /' >> "$S" ;;
  esac
done
note "done"
