#!/usr/bin/env bash
# A final GPU run (packed by bench/device/pack_final.sh), from the repository root on the GPU machine:
#   source .device/env.sh && bash .device/final/run.sh [steps]     results under $OUT
# Steps (default all, in this order; each under its own timeout, cut to what RUN_BUDGET seconds leave):
#   kernels  cuda_bench --kernel-only, every format, T = 1 / 16 / 256 / 4096 (CUDA-graph replay, median)
#   vllm     vLLM's Triton fused_moe (the harness kept outside the repository, when packed)
#   torch    bench/torch_baseline.py (HF loop, torch._grouped_mm)
#   e2e      cuda_bench end to end through tfjs, bf16, with a 4-layer device-resident stack
#   wgpre    WebGPU formats bench through the FusedMoE layer with ORT's QMoE in the same process, T = 256 / 4096
#   wgdec    WebGPU decode bench, packed formats at T = 1 / 16, ORT's QMoE, the 48-layer int4 stack
#   specs    every CUDA spec;  memcheck  the compute-sanitizer memcheck set (small shapes)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
ROOT=$PWD
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=/tmp/final
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
start=$(date +%s)
budget=${RUN_BUDGET:-570}
left() { echo $(( budget - ($(date +%s) - start) - 3 )); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 8 ? l : 0 )) || echo "$1"; }
stamp() { echo "$1 exit $2 at $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"; }
tar xJf "$HERE/payload.tar.xz"
tar xJf "$ROOT/.device/modules.tar.xz"
export TFJS_MOE_CUDA_ADDON=$WORK/tfjs_moe_cuda.node PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt" commit.txt | tee -a "$OUT/summary.txt"
steps=${*:-kernels vllm torch e2e wgpre wgdec specs memcheck}
for step in $steps; do
  case $step in
    kernels)
      t=$(cap 120); timeout "$t" node cuda_bench.mjs --kernel-only --dtypes bfloat16,int8,int8-g32,mxfp4,int4 \
          --tokens 1,16,256,4096 --out "$OUT/cuda_kernels.json" > "$OUT/cuda_kernels.log" 2>&1; stamp kernels $?
      grep -E '^kernel-only' "$OUT/cuda_kernels.log" | cut -c1-120 | tee -a "$OUT/summary.txt" ;;
    vllm)
      [ -f vllm/bench_vllm.py ] || { echo "vllm: not packed" | tee -a "$OUT/summary.txt"; continue; }
      t=$(cap 90); timeout "$t" python3 vllm/bench_vllm.py --tokens 1,16,256,4096 --replays 25 --budget $((t - 10)) \
          --out "$OUT/vllm.json" > "$OUT/vllm.log" 2>&1; stamp vllm $?
      grep -E '^T=|rror' "$OUT/vllm.log" | head -12 | tee -a "$OUT/summary.txt" ;;
    torch)
      t=$(cap 120); timeout "$t" python3 torch_baseline.py --iters 15 --out "$OUT/torch.json" > "$OUT/torch.log" 2>&1
      stamp torch $?
      python3 -c "
import json; r = json.load(open('$OUT/torch.json'))
for x in r['results']: print(f\"torch {x['impl']:10s} {x['dtype']:9s} T={x['T']:5d}\", f\"{x['median_ms']:.4f} ms\" if 'median_ms' in x else x.get('error'))
" 2>&1 | tee -a "$OUT/summary.txt" ;;
    e2e)
      t=$(cap 120); timeout "$t" node cuda_bench.mjs --dtypes bfloat16 --tokens 1,16,256,4096 --e2e-iters 10 --stack 4 \
          --modes staged,trace --out "$OUT/cuda_e2e.json" > "$OUT/cuda_e2e.log" 2>&1; stamp e2e $?
      tail -25 "$OUT/cuda_e2e.log" | cut -c1-200 >> "$OUT/summary.txt" ;;
    wgpre)
      mkdir -p "$OUT/wgpre"; t=$(cap 150)
      OUT=$OUT/wgpre BENCH_HALF_MATRICES=1 BENCH_PRESETS=0 BENCH_LAYER_FORWARD=1 BENCH_T=256,4096 \
          BENCH_FORMATS="int4 g32,float16,bfloat16,int8 g128" BENCH_ORT_FORMATS="int4 g32" \
          timeout "$t" node webgpu/webgpu_qmoe_bench.mjs > "$OUT/wgpre/stdout.log" 2>&1; stamp wgpre $?
      node -e "const d=JSON.parse(require('fs').readFileSync('$OUT/wgpre/webgpu_formats_bench.json','utf8'));for(const r of d.rows){const h=r.half||{};console.log('wgpre',r.format,r.T,'half layer',h.layer&&h.layer.toFixed(3),'gpu',h.layerGpuMs&&h.layerGpuMs.toFixed(3),'gemms gpu',h.gemmsGpuMs&&h.gemmsGpuMs.toFixed(3),'ort',r.ortMs&&r.ortMs.toFixed(2),r.error||h.error||'')}" 2>&1 | cut -c1-300 | tee -a "$OUT/summary.txt" ;;
    wgdec)
      mkdir -p "$OUT/wgdec"; t=$(cap 150)
      OUT=$OUT/wgdec BENCH_T=1 BENCH_LARGE_T= BENCH_STACK=0 BENCH_ENTRIES=0 BENCH_PACKED='int4 g32,float16,bfloat16' \
          BENCH_PACKED_T=1,16 BENCH_PACKED_T_REST=1,16 BENCH_PACKED_SWEEP=0 BENCH_ORT='int4 g32' BENCH_PACKED_STACK=48 \
          BENCH_BUDGET_S=$t timeout "$t" node webgpu/webgpu_decode_bench.mjs > "$OUT/wgdec/stdout.log" 2>&1; stamp wgdec $?
      tail -30 "$OUT/wgdec/stdout.log" | cut -c1-1500 >> "$OUT/summary.txt" ;;
    specs)
      t=$(cap 200); timeout "$t" node run-specs.mjs > "$OUT/specs.log" 2>&1; stamp specs $?
      grep -E 'passed, .* failed|^FAILED|Failures:' "$OUT/specs.log" | head -10 | tee -a "$OUT/summary.txt" ;;
    memcheck)
      t=$(cap 150); (cd memcheck && TFJS_MOE_SPEC_SCALE=small timeout "$t" compute-sanitizer --tool memcheck --leak-check no \
          --error-exitcode 3 node run-specs.mjs > "$OUT/memcheck.log" 2>&1); stamp memcheck $?
      grep -E 'ERROR SUMMARY|passed, .* failed' "$OUT/memcheck.log" | tee -a "$OUT/summary.txt" ;;
  esac
done
echo "all done after $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
# The device tool brings back at most 8 files: everything but the summary goes back as one archive.
(cd "$OUT" && tar -cJf /tmp/final_results.tar.xz --exclude=./summary.txt . && find . -mindepth 1 ! -name summary.txt -delete \
    && mv /tmp/final_results.tar.xz .)
