/**
 * CPU benchmark: one Qwen3-30B-A3B MoE layer (f32 weights; full width H 2048, I 768, E 128, k 8, and 1/4 width
 * H 512, I 192) at T = 1, 16, 256, side by side with onnxruntime-node's CPU EP running com.microsoft.MoE behind
 * a MatMul router on the same weights (onnx_moe_model.ts), with 1 and 2 threads. tfjs-moe runs fusedMoeForward
 * on the cpu backend: the wasm SIMD kernels, and (1/4 width only, it is slow) the JavaScript kernels
 * (MOE_WASM = false). Each timed call includes creating the input tensor and reading the output. Medians of
 * repeated calls after warm-up (the first call packs the routed experts' weights into wasm memory).
 *
 * ORT's calls and ours alternate (the machine is shared: both sides see the same load); peak memory is the
 * weights three times (our tensors, ORT's session, the packed copy in wasm memory). Outputs are compared
 * (max |ours - ORT| / max |ORT|) on every T.
 *
 * At 1/4 width the same model also runs in onnxruntime-web's wasm build (SIMD, in Node: the V8 that Chromium
 * has; one thread, its thread count is fixed at its first session), against our 1-thread number. The full-width
 * model does not fit it (a protobuf holds < 2 GB; external data would need a 4 GiB wasm heap for 2.4 GB).
 *
 * Run (writes bench/results/cpu_bench.json, or $OUT): see BENCHMARKS.md.
 *   BENCH_WIDTHS=quarter,full  BENCH_T=1,16,256  BENCH_THREADS=1,2
 */
import * as tf from '@tensorflow/tfjs';
import {execSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {cpus, tmpdir} from 'node:os';
import {join} from 'node:path';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';

import {wasmStatus} from '../src/index.js';
import {fusedMoeForward} from '../src/internal.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../src/index.js';
import {MoeLayerArrays, ortMoeModelBytes, writeOrtMoeModel} from './onnx_moe_model.js';
import {median} from './stats.js';

const WIDTHS: Record<string, {H: number, I: number}> = {quarter: {H: 512, I: 192}, full: {H: 2048, I: 768}};
const E = 128, K = 8;
const widths = (process.env.BENCH_WIDTHS ?? 'quarter,full').split(',');
const tokens = (process.env.BENCH_T ?? '1,16,256').split(',').map(Number);
const threadCounts = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);
const outDir = process.env.OUT ?? 'bench/results';

function reps(T: number, H: number): number {
  const work = T * H;
  return work <= 2048 ? 25 : work <= 32768 ? 11 : 5;
}

/** Seeded uniform values in [-scale, scale) (xorshift; identical on both sides because the arrays are shared). */
function uniform(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296 * 2 - 1) * scale;
  }
  return out;
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

interface Row {
  width: string;
  H: number;
  I: number;
  T: number;
  threads: number;
  ortMs: number;
  wasmMs: number;
  /** Process CPU time per call: independent of the machine's load on 1 thread (ORT's pool spins on 2). */
  ortCpuMs: number;
  wasmCpuMs: number;
  jsMs: number | null;
  ortWebMs: number | null;
  ratio: number;
  relDiffVsOrt: number;
}

async function benchWidth(width: string): Promise<Row[]> {
  const {H, I} = WIDTHS[width];
  const w: MoeLayerArrays = {H, I, E, k: K, gate: uniform(H * E, 1 / Math.sqrt(H), 1),
    upGate: uniform(E * H * 2 * I, 1 / Math.sqrt(H), 2), down: uniform(E * I * H, 1 / Math.sqrt(I), 3)};
  const inputs = new Map(tokens.map(T => [T, uniform(T * H, 1, 100 + T)]));
  const weights: FusedMoEWeights = {
    gate_weight: tf.tensor2d(w.gate, [H, E]),
    up_gate_proj_weight: tf.tensor3d(w.upGate, [E, H, 2 * I]),
    down_proj_weight: tf.tensor3d(w.down, [E, I, H]),
  };
  const options: FusedMoEOptions = {numExperts: E, topK: K, moeIntermediateSize: I, topkMethod: 'greedy', nGroup: 1,
    topkGroup: 1, routedScalingFactor: 1, sparsemixerEpsilon: 0.01, renormalize: true, renormalizeEpsilon: null, useCorrectionBias: false, zeroExperts: 0, latentSize: null,
    withBias: false, probInAdvance: false, routingWeightOn: 'output', routerBias: false, activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7,
    sharedExpertIntermediateSize: 0, sharedExpertGate: false, backend: 'cpu', computeDtype: 'float32',
    expertWeightFormat: 'float32', quantGroupSize: null, quantZeroPoint: false};
  const ours = (x: Float32Array, T: number) => {
    const y = tf.tidy(() => fusedMoeForward(tf.tensor2d(x, [T, H]), weights, options));
    const data = y.dataSync() as Float32Array;
    y.dispose();
    return data;
  };
  const timed = async (fn: () => unknown) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  /** [wall ms, process CPU ms] of one call. */
  const timedCpu = async (fn: () => unknown): Promise<[number, number]> => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return [wall, (c.user + c.system) / 1000];
  };
  const rows: Row[] = [];
  const jsMs = new Map<number, number>();
  const ortWebMs = new Map<number, number>();
  if (width === 'quarter') {
    // Our JavaScript kernels (slow: a few calls) and onnxruntime-web (wasm, 1 thread), each on its own.
    tf.env().set('MOE_WASM', false);
    for (const T of tokens) {
      const x = inputs.get(T)!;
      ours(x, T);
      const times: number[] = [];
      for (let r = 0; r < 3; r++) times.push(await timed(() => ours(x, T)));
      jsMs.set(T, median(times));
    }
    tf.env().set('MOE_WASM', true);
    ortWeb.env.wasm.numThreads = 1;
    const session = await ortWeb.InferenceSession.create(ortMoeModelBytes(w), {executionProviders: ['wasm']});
    for (const T of tokens) {
      const x = inputs.get(T)!;
      const call = async () => (await session.run({input: new ortWeb.Tensor('float32', x, [T, H])})).output.data;
      await call();
      await call();
      const times: number[] = [];
      for (let r = 0; r < reps(T, H); r++) times.push(await timed(call));
      ortWebMs.set(T, median(times));
      console.log(`  onnxruntime-web ${width} T=${T} threads=1: ${median(times).toFixed(2)} ms`);
    }
    await session.release();
  }
  const dir = mkdtempSync(join(tmpdir(), 'tfjs-moe-ort-'));
  try {
    const modelPath = writeOrtMoeModel(dir, w);
    for (const threads of threadCounts) {
      const session = await ort.InferenceSession.create(modelPath, {
        executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
        executionMode: 'sequential', graphOptimizationLevel: 'all'});
      tf.env().set('MOE_WASM_THREADS', threads);
      for (const T of tokens) {
        const x = inputs.get(T)!;
        const ortCall = async () =>
          (await session.run({input: new ort.Tensor('float32', x, [T, H])})).output.data as Float32Array;
        const ortOut = await ortCall();
        const out = ours(x, T);
        await ortCall();
        ours(x, T);
        // Alternating calls: both sides see the same load from the machine's other users.
        const ortTimes: number[] = [], ourTimes: number[] = [], ortCpu: number[] = [], ourCpu: number[] = [];
        for (let r = 0; r < reps(T, H); r++) {
          const [ow, oc] = await timedCpu(ortCall);
          const [tw, tc] = await timedCpu(() => ours(x, T));
          ortTimes.push(ow);
          ortCpu.push(oc);
          ourTimes.push(tw);
          ourCpu.push(tc);
        }
        const o = median(ortTimes), wasmMs = median(ourTimes);
        const row: Row = {width, H, I, T, threads, ortMs: o, wasmMs, ortCpuMs: median(ortCpu), wasmCpuMs: median(ourCpu),
          jsMs: threads === threadCounts[0] ? jsMs.get(T) ?? null : null,
          ortWebMs: threads === 1 ? ortWebMs.get(T) ?? null : null, ratio: wasmMs / o,
          relDiffVsOrt: relDiff(out, ortOut)};
        console.log(`  ${width} T=${T} threads=${threads}: ORT ${o.toFixed(2)} ms, tfjs-moe wasm ` +
            `${wasmMs.toFixed(2)} ms${row.jsMs != null ? `, js ${row.jsMs.toFixed(1)} ms` : ''}; ratio to ORT ` +
            `${row.ratio.toFixed(2)}; max |diff| / max |ORT| ${row.relDiffVsOrt.toExponential(1)}`);
        rows.push(row);
      }
      await session.release();
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
  tf.dispose(Object.values(weights) as tf.Tensor[]);
  return rows;
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const status = wasmStatus();
  if (!status.available) throw new Error(`wasm kernels unavailable: ${status.reason}`);
  const machine = {cpu: cpus()[0]?.model, cores: cpus().length, node: process.version,
    ort: ort.env.versions?.common, loadBefore: execSync('uptime').toString().trim()};
  console.log(JSON.stringify(machine));
  const rows: Row[] = [];
  for (const width of widths) rows.push(...await benchWidth(width));
  const loadAfter = execSync('uptime').toString().trim();
  console.log(`load after: ${loadAfter}`);
  console.log('\n| layer | T | threads | ORT ms | tfjs-moe wasm ms | ratio | CPU ms ORT / ours (ratio) | tfjs-moe JS ms | ' +
      'ORT-web ms (ratio) | max diff vs ORT |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.width} (H ${r.H}, I ${r.I}) | ${r.T} | ${r.threads} | ${r.ortMs.toFixed(2)} | ` +
        `${r.wasmMs.toFixed(2)} | ${r.ratio.toFixed(2)} | ` +
        `${r.threads === 1 ? `${r.ortCpuMs.toFixed(1)} / ${r.wasmCpuMs.toFixed(1)} (${(r.wasmCpuMs / r.ortCpuMs).toFixed(2)})` : '-'} | ` +
        `${r.jsMs?.toFixed(1) ?? '-'} | ` +
        `${r.ortWebMs != null ? `${r.ortWebMs.toFixed(2)} (${(r.wasmMs / r.ortWebMs).toFixed(2)})` : '-'} | ` +
        `${r.relDiffVsOrt.toExponential(1)} |`);
  }
  mkdirSync(outDir, {recursive: true});
  writeFileSync(join(outDir, 'cpu_bench.json'), JSON.stringify({machine, loadAfter, rows}, null, 1));
}

await main();
