/**
 * CUDA benchmark of one Qwen3-30B-A3B MoE layer (H 2048, I 768, E 128, k 8, softmax top-k, renormalised) at
 * T = 1, 16, 256, 4096 in float32 and bfloat16:
 *  - kernel time of the whole layer (CUDA events around the native forward, x resident), CUDA-graph replay and
 *    plain stream launches, median over iterations;
 *  - end-to-end time through tfjs (tensor -> host data -> upload -> forward -> download -> tensor), median;
 *  - the floor: max(bytes / 2.86 TB/s, flops / 746 TFLOP/s), bytes = the weights of the experts a uniform router
 *    is expected to hit (E * (1 - (1 - k/E)^T)) + router + x + out.
 * Usage: node cuda_bench.js [--out file.json] [--dtypes float32,bfloat16] [--tokens 1,16,256,4096] [--iters 30]
 */
import * as tf from '@tensorflow/tfjs-core';
// A named import: a bare side-effect import is dropped by bundlers (the package lists its side-effect files).
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {writeFileSync} from 'node:fs';
import {performance} from 'node:perf_hooks';
import {CudaComputeDtype, cudaStatus} from 'tfjs-moe';
import {CudaMoeRunner} from 'tfjs-moe/internal';

import {findModelShape} from '../demo/model_shapes.js';
import {median} from './stats.js';

// Qwen3-30B-A3B's layer from the shared model table (demo/model_shapes.js).
const {hidden: H, intermediate: I, numExperts: E, topK: K} = findModelShape('qwen3')!;
const BANDWIDTH = 2.86e12, BF16_FLOPS = 746e12;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/** Uniform values in [-a, a) from a xorshift stream (fast enough for the 600M weights of the layer). */
function uniform(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const scale = (2 * a) / 4294967296;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s * scale - a;
  }
  return out;
}


function floorMs(T: number, dtype: CudaComputeDtype) {
  const eb = dtype === 'float32' ? 4 : 2;
  const activeExperts = E * (1 - Math.pow(1 - K / E, T));
  const bytes = activeExperts * 3 * H * I * eb + H * E * 4 + 2 * T * H * 4;
  const flops = 2 * T * K * 3 * H * I + 2 * T * H * E;
  return {activeExperts, bytes, flops, floorMs: Math.max(bytes / BANDWIDTH, flops / BF16_FLOPS) * 1e3};
}

async function main() {
  const status = cudaStatus();
  console.log(JSON.stringify(status));
  if (!status.available) throw new Error(`CUDA unavailable: ${status.reason}`);
  console.log(`tfjs-backend-cpu ${version_cpu}`);
  await tf.setBackend('cpu');
  const dtypes = arg('dtypes', 'float32,bfloat16').split(',') as CudaComputeDtype[];
  const tokens = arg('tokens', '1,16,256,4096').split(',').map(Number);
  const iters = Number(arg('iters', '20'));
  const t0 = performance.now();
  const weights = {
    gateWeight: uniform(H * E, Math.sqrt(3 / H), 1),
    upGateProjWeight: uniform(E * H * 2 * I, Math.sqrt(3 / H), 2),
    downProjWeight: uniform(E * I * H, Math.sqrt(3 / I), 3),
  };
  console.log(`weights generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const results: Record<string, unknown>[] = [];
  for (const dtype of dtypes) {
    const u0 = performance.now();
    const runner = new CudaMoeRunner({hidden: H, numExperts: E, topK: K, intermediateSize: I, computeDtype: dtype}, weights);
    const uploadMs = performance.now() - u0;
    for (const T of tokens) {
      const x = uniform(T * H, 1, 100 + T);
      const graph = runner.benchmark(x, T, {warmup: 5, iters, useGraph: true});
      const stream = runner.benchmark(x, T, {warmup: 3, iters, useGraph: false});
      const e2e: number[] = [];
      const xT = tf.tensor2d(x, [T, H]);
      for (let i = 0; i < 6; i++) {
        const s = performance.now();
        const out = tf.tensor2d(runner.forward(xT.dataSync() as Float32Array, T, true), [T, H]);
        await out.data();
        e2e.push(performance.now() - s);
        out.dispose();
      }
      xT.dispose();
      const stages = runner.profile(x, T, 10);
      const f = floorMs(T, dtype);
      const row = {
        dtype, T, kernelGraphMs: median(graph), kernelStreamMs: median(stream), endToEndTfjsMs: median(e2e),
        ...f, ratioToFloor: median(graph) / f.floorMs, uploadMs, stages,
      };
      results.push(row);
      console.log(JSON.stringify(row));
    }
    runner.dispose();
  }
  const out = arg('out', '');
  if (out) writeFileSync(out, JSON.stringify({device: status.device, H, I, E, k: K, results}, null, 1));
  console.log('\n dtype     |     T | kernel (graph) ms | kernel (stream) ms | e2e tfjs ms | floor ms | x floor');
  for (const r of results as Array<Record<string, number | string>>) {
    console.log(` ${String(r.dtype).padEnd(9)} | ${String(r.T).padStart(5)} | ${(r.kernelGraphMs as number).toFixed(4).padStart(17)} | ` +
        `${(r.kernelStreamMs as number).toFixed(4).padStart(18)} | ${(r.endToEndTfjsMs as number).toFixed(3).padStart(11)} | ` +
        `${(r.floorMs as number).toFixed(4).padStart(8)} | ${(r.ratioToFloor as number).toFixed(2).padStart(7)}`);
  }
  for (const r of results as Array<Record<string, unknown>>) {
    const st = Object.entries(r.stages as Record<string, number>).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ');
    console.log(` ${r.dtype} T=${r.T}: ${st}`);
  }
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
