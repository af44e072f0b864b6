/**
 * Where one cpu forward of the full-width Qwen3-30B-A3B layer (H 2048, I 768, E 128, k 8) spends its time: the
 * steps of kernels/cpu/layer_forward.ts (router GEMM, top-k routing, permute, up GEMM + SwiGLU, down GEMM,
 * combine, the output tensor) run one by one on the same host arrays with the wasm kernels, each timed in process
 * CPU ms (1 thread), median over calls after warm-up. The GEMM rows include the copies into and out of wasm
 * memory (runExpertCall). Interleaved with them, the same forward as the layer runs it (cpuLayerForward: its
 * GEMMs gather the rows and combine the output in wasm memory), as 'layer forward'. No ORT: this only splits our
 * time.
 *
 * Run: `npx esbuild bench/cpu_layer_split.ts --bundle --platform=node --format=esm '--external:@tensorflow/*'
 * --outfile=build/bench/cpu_layer_split.mjs && node --experimental-wasm-relaxed-simd --max-old-space-size=16000
 * build/bench/cpu_layer_split.mjs` (BENCH_T, default 256; BENCH_FORMATS, default int8; BENCH_REPS, default 7).
 */
import * as tf from '@tensorflow/tfjs';

import {quantizeExpertWeightsFromArray, wasmStatus} from '../src/index.js';
import type {QuantizedExpertWeights} from '../src/index.js';
import {cpuLayerForward} from '../src/kernels/cpu/layer_forward.js';
import {moeCombineImpl} from '../src/kernels/cpu/moe_combine_impl.js';
import {moePermuteImpl} from '../src/kernels/cpu/moe_permute_impl.js';
import {moeTopkSelectImpl} from '../src/kernels/cpu/moe_topk_select_impl.js';
import type {ExpertWeightData, ExpertWeightLayout} from '../src/kernels/expert_weight_formats.js';
import {wasmBatchedGemm, wasmBatchedGemmQuantized, wasmBatchedGemmSwigluQuantized} from
    '../src/kernels/wasm/batched_gemm_wasm.js';
import {moeBenchOptions, relDiff, uniform} from './cpu_bench_common.js';
import {median} from './stats.js';

const H = 2048, I = 768, E = 128, K = 8, GROUP = 32;
const T = Number(process.env.BENCH_T ?? 256);
const formats = (process.env.BENCH_FORMATS ?? 'int8').split(',') as Array<'int8' | 'int4'>;
const REPS = Number(process.env.BENCH_REPS ?? 7);

const cpuMs = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};

function layoutOf(q: QuantizedExpertWeights): ExpertWeightLayout {
  const [numExperts, depth, width] = q.shape;
  return {format: q.format, numExperts, depth, width, transposed: false, groupSize: q.groupSize, zeroPoint: false};
}
function dataOf(q: QuantizedExpertWeights): () => ExpertWeightData {
  return () => ({values: q.values.dataSync() as Int32Array, scales: q.scales!.dataSync() as Float32Array,
    zeroPoints: null});
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  tf.env().set('MOE_WASM_THREADS', 1);
  const status = wasmStatus();
  if (!status.available) throw new Error(`wasm kernels unavailable: ${status.reason}`);
  console.log(JSON.stringify({T, simd: status.simd, node: process.version}));
  const backend = tf.backend();
  const gate = uniform(H * E, 1 / Math.sqrt(H), 1);
  const gateId = {};
  const x = uniform(T * H, 1, 100 + T);
  for (const format of formats) {
    const upGate = quantizeExpertWeightsFromArray(uniform(E * H * 2 * I, 1 / Math.sqrt(H), 2), [E, H, 2 * I], format,
                                                  {groupSize: GROUP});
    const down = quantizeExpertWeightsFromArray(uniform(E * I * H, 1 / Math.sqrt(I), 3), [E, I, H], format,
                                                {groupSize: GROUP});
    const steps: Record<string, number[]> = {};
    const weights = {gate_weight: tf.tensor2d(gate, [H, E]), up_gate_proj_weight: upGate, down_proj_weight: down};
    const options = {...moeBenchOptions(E, K, I), expertWeightFormat: format, quantGroupSize: GROUP};
    const xt = tf.tensor2d(x, [T, H]);
    let layerOut: Float32Array = new Float32Array(0), stepsOut: Float32Array = new Float32Array(0);
    const time = <R>(name: string, fn: () => R): R => {
      const c0 = process.cpuUsage();
      const r = fn();
      (steps[name] ??= []).push(cpuMs(c0));
      return r;
    };
    for (let rep = 0; rep < REPS + 2; rep++) {
      const c0 = process.cpuUsage();
      const logits = time('router gemm', () =>
        wasmBatchedGemm(backend, x, T, H, () => gate, gateId, 1, E, Int32Array.of(0, T), false, null)!);
      const {topkIds, topkWeights} = time('routing', () =>
        moeTopkSelectImpl(logits, T, E, null, K, true, 0, 1, 1, 1, 'greedy', 0.01));
      const {permutedX, numRows, expertOffsets, rowMap} = time('permute', () =>
        moePermuteImpl(x, T, H, topkIds, K, E, 1, null, 0));
      const activated = time('up gemm + swiglu', () => wasmBatchedGemmSwigluQuantized(
          backend, permutedX, numRows, layoutOf(upGate), dataOf(upGate), upGate.values.dataId, expertOffsets, null,
          null)!);
      const projected = time('down gemm', () => wasmBatchedGemmQuantized(
          backend, activated, numRows, layoutOf(down), dataOf(down), down.values.dataId, expertOffsets, null)!);
      const out = time('combine', () =>
        moeCombineImpl(projected, numRows, H, rowMap, topkWeights, topkIds, T, K, null, 0, false, null));
      time('output tensor', () => tf.tensor2d(out, [T, H]).dispose());
      (steps['total'] ??= []).push(cpuMs(c0));
      stepsOut = out;
      time('layer forward', () => {
        const y = cpuLayerForward(xt, weights, options)!;
        layerOut = y.dataSync() as Float32Array;
        y.dispose();
      });
      if (rep === 0 && process.env.BENCH_PRINT_ROWS) {
        console.log(`rows per expert: ${Array.from({length: E}, (_, e) => expertOffsets[e + 1] - expertOffsets[e]).join()}`);
      }
      if (rep < 2) for (const s of Object.values(steps)) s.pop();  // warm-up: packing the experts
    }
    const total = median(steps['total']);
    console.log(`${format} g${GROUP} T=${T}, 1 thread, median of ${REPS} (CPU ms, share of the total):`);
    for (const [name, t] of Object.entries(steps)) {
      const m = median(t);
      console.log(`  ${name.padEnd(18)} ${m.toFixed(1).padStart(7)}  ${(100 * m / total).toFixed(1)}%  ` +
          `(min ${Math.min(...t).toFixed(1)})`);
    }
    console.log(`  layer forward vs steps: max |diff| / max ${relDiff(layerOut, stepsOut).toExponential(1)}`);
    tf.dispose([upGate, down, weights.gate_weight, xt] as unknown as tf.TensorContainer);
  }
}

await main();
