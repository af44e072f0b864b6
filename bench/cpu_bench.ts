/**
 * CPU benchmark: one Qwen3-30B-A3B MoE layer (full width H 2048, I 768, E 128, k 8, and 1/4 width H 512, I 192)
 * at T = 1, 16, 256, side by side with onnxruntime-node's CPU EP on the same weights (onnx_moe_model.ts), with 1
 * and 2 threads, in three expert weight formats: float32 (ORT: com.microsoft.MoE), and int8 / int4 with one
 * float32 scale per 32 k and column (ORT: com.microsoft.QMoE with exactly our codes and scales, so both sides
 * compute with the same dequantized weights). A MatMul router feeds both. tfjs-moe runs fusedMoeForward on the cpu
 * backend: the wasm SIMD kernels, and (float32 at 1/4 width only, it is slow) the JavaScript kernels
 * (MOE_WASM = false). Each timed call includes creating the input tensor and reading the output. Medians of
 * repeated calls after warm-up (the first call packs the routed experts' weights into wasm memory).
 *
 * ORT's calls and ours alternate (the machine is shared: both sides see the same load). Outputs are compared
 * (max |ours - ORT| / max |ORT|) on every row.
 *
 * At 1/4 width the float32 model also runs in onnxruntime-web's wasm build (SIMD, in Node: the V8 that Chromium
 * has; one thread, its thread count is fixed at its first session), against our 1-thread number. The full-width
 * model does not fit it (a protobuf holds < 2 GB; external data would need a 4 GiB wasm heap for 2.4 GB).
 *
 * Run (writes bench/results/cpu_bench.json, or $OUT): see BENCHMARKS.md.
 *   BENCH_WIDTHS=quarter,full  BENCH_T=1,16,256  BENCH_THREADS=1,2  BENCH_FORMATS=float32,int8,int4
 *   BENCH_OURS=layer (default: what a FusedMoE layer with backend 'cpu' runs, the cpu whole-layer forward) or ops
 *   (fusedMoeForward, the op chain)
 */
import * as tf from '@tensorflow/tfjs';
import {execSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {cpus, tmpdir} from 'node:os';
import {join} from 'node:path';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';

import {clearWasmWeightCache, quantizeExpertWeightsFromArray, wasmStatus} from '../src/index.js';
import {fusedMoeForward, selectMoeForward} from '../src/internal.js';
import type {FusedMoEOptions, FusedMoEWeights, QuantizedExpertWeights} from '../src/index.js';
import {moeBenchOptions, relDiff, uniform} from './cpu_bench_common.js';
import {MoeLayerArrays, ortMoeModelBytes, PackedProjection, writeOrtMoeModel, writeOrtQMoeModel} from
    './onnx_moe_model.js';
import {median} from './stats.js';

const WIDTHS: Record<string, {H: number, I: number}> = {quarter: {H: 512, I: 192}, full: {H: 2048, I: 768}};
const E = 128, K = 8;
const widths = (process.env.BENCH_WIDTHS ?? 'quarter,full').split(',');
const tokens = (process.env.BENCH_T ?? '1,16,256').split(',').map(Number);
const threadCounts = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);
const formats = (process.env.BENCH_FORMATS ?? 'float32,int8,int4').split(',') as Array<'float32' | 'int8' | 'int4'>;
const GROUP = 32;
const outDir = process.env.OUT ?? 'bench/results';
const oursPath = process.env.BENCH_OURS ?? 'layer';

function reps(T: number, H: number): number {
  const work = T * H;
  return work <= 2048 ? 25 : work <= 32768 ? 11 : 5;
}

interface Row {
  width: string;
  /** Expert weight format: float32, or int8 / int4 with one scale per 32 k. */
  format: string;
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
  /** The SIMD build wasmMs ran ('relaxed' where the engine accepts it: node --experimental-wasm-relaxed-simd). */
  simd: string;
  /** With relaxed SIMD: the plain build in the same alternation (ORT, relaxed, plain), else null. */
  plainMs: number | null;
  plainCpuMs: number | null;
  ratio: number;
  relDiffVsOrt: number;
}

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

/** The host arrays of a packed projection, for the QMoE model. */
function hostProjection(q: QuantizedExpertWeights, format: 'int8' | 'int4'): PackedProjection {
  return {format, groupSize: q.groupSize, shape: q.shape as [number, number, number],
    values: q.values.dataSync() as Int32Array, scales: q.scales!.dataSync() as Float32Array};
}

/** One model (a format of one width) timed against ORT at every T and thread count: ORT and ours alternate. */
async function sideBySide(width: string, format: string, H: number, I: number, modelPath: string,
                          inputs: Map<number, Float32Array>, ours: (x: Float32Array, T: number) => Float32Array,
                          extra: (T: number, threads: number) => Pick<Row, 'jsMs' | 'ortWebMs'>): Promise<Row[]> {
  const rows: Row[] = [];
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
      const ortTimes: number[] = [], ourTimes: number[] = [], ortCpu: number[] = [], ourCpu: number[] = [];
      const plainTimes: number[] = [], plainCpu: number[] = [];
      const plain = (fn: () => unknown) => () => {
        tf.env().set('MOE_WASM_RELAXED_SIMD', false);
        try {
          return fn();
        } finally {
          tf.env().set('MOE_WASM_RELAXED_SIMD', true);
        }
      };
      if (relaxed) plain(() => ours(x, T))();
      for (let r = 0; r < reps(T, H); r++) {
        const [ow, oc] = await timedCpu(ortCall);
        const [tw, tc] = await timedCpu(() => ours(x, T));
        ortTimes.push(ow);
        ortCpu.push(oc);
        ourTimes.push(tw);
        ourCpu.push(tc);
        if (relaxed) {
          const [pw, pc] = await timedCpu(plain(() => ours(x, T)));
          plainTimes.push(pw);
          plainCpu.push(pc);
        }
      }
      const o = median(ortTimes), wasmMs = median(ourTimes);
      const row: Row = {width, format, H, I, T, threads, ortMs: o, wasmMs, ortCpuMs: median(ortCpu),
        wasmCpuMs: median(ourCpu), ...extra(T, threads), simd: relaxed ? 'relaxed' : 'plain',
        plainMs: relaxed ? median(plainTimes) : null, plainCpuMs: relaxed ? median(plainCpu) : null,
        ratio: wasmMs / o, relDiffVsOrt: relDiff(out, ortOut)};
      console.log(`  ${width} ${format} T=${T} threads=${threads}: ORT ${o.toFixed(2)} ms, tfjs-moe wasm ` +
          `(${row.simd}) ${wasmMs.toFixed(2)} ms${row.plainMs != null ? `, plain ${row.plainMs.toFixed(2)} ms` : ''}` +
          `${row.jsMs != null ? `, js ${row.jsMs.toFixed(1)} ms` : ''}; ratio to ORT ` +
          `${row.ratio.toFixed(2)}; max |diff| / max |ORT| ${row.relDiffVsOrt.toExponential(1)}` +
          (threads === 1 ? `; CPU ms ORT ${row.ortCpuMs.toFixed(1)}, ours ${row.wasmCpuMs.toFixed(1)}` +
              `${row.plainCpuMs != null ? `, plain ${row.plainCpuMs.toFixed(1)}` : ''}` : ''));
      rows.push(row);
    }
    await session.release();
  }
  return rows;
}

async function benchWidth(width: string): Promise<Row[]> {
  const {H, I} = WIDTHS[width];
  const w: MoeLayerArrays = {H, I, E, k: K, gate: uniform(H * E, 1 / Math.sqrt(H), 1),
    upGate: uniform(E * H * 2 * I, 1 / Math.sqrt(H), 2), down: uniform(E * I * H, 1 / Math.sqrt(I), 3)};
  const inputs = new Map(tokens.map(T => [T, uniform(T * H, 1, 100 + T)]));
  const gateWeight = tf.tensor2d(w.gate, [H, E]);
  const owner = {};
  const layerForward = selectMoeForward('cpu').forward;
  const run = oursPath === 'ops' ? (x: tf.Tensor2D, weights: FusedMoEWeights, options: FusedMoEOptions) =>
      fusedMoeForward(x, weights, options) :
      (x: tf.Tensor2D, weights: FusedMoEWeights, options: FusedMoEOptions) =>
          layerForward(x, weights, options, {owner}) as tf.Tensor2D;
  const forward = (weights: FusedMoEWeights, options: FusedMoEOptions) => (x: Float32Array, T: number) => {
    const y = tf.tidy(() => run(tf.tensor2d(x, [T, H]), weights, options));
    const data = y.dataSync() as Float32Array;
    y.dispose();
    return data;
  };
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tfjs-moe-ort-'));
  try {
    for (const format of formats) {
      if (format === 'float32') {
        const weights: FusedMoEWeights = {gate_weight: gateWeight, up_gate_proj_weight: tf.tensor3d(w.upGate, [E, H, 2 * I]),
          down_proj_weight: tf.tensor3d(w.down, [E, I, H])};
        const ours = forward(weights, moeBenchOptions(E, K, I));
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
        rows.push(...await sideBySide(width, format, H, I, writeOrtMoeModel(dir, w), inputs, ours, (T, threads) => ({
          jsMs: threads === threadCounts[0] ? jsMs.get(T) ?? null : null,
          ortWebMs: threads === 1 ? ortWebMs.get(T) ?? null : null})));
        tf.dispose([weights.up_gate_proj_weight as tf.Tensor, weights.down_proj_weight as tf.Tensor]);
      } else {
        const t0 = performance.now();
        const upGate = quantizeExpertWeightsFromArray(w.upGate, [E, H, 2 * I], format, {groupSize: GROUP});
        const down = quantizeExpertWeightsFromArray(w.down, [E, I, H], format, {groupSize: GROUP});
        const modelPath = writeOrtQMoeModel(dir, {H, I, E, k: K, gate: w.gate, upGate: hostProjection(upGate, format),
          down: hostProjection(down, format)});
        console.log(`  ${width} ${format} g${GROUP}: quantized and written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        const ours = forward({gate_weight: gateWeight, up_gate_proj_weight: upGate, down_proj_weight: down},
                             {...moeBenchOptions(E, K, I), expertWeightFormat: format, quantGroupSize: GROUP});
        rows.push(...await sideBySide(width, `${format} g${GROUP}`, H, I, modelPath, inputs, ours,
                                      () => ({jsMs: null, ortWebMs: null})));
        tf.dispose([upGate, down] as unknown as tf.TensorContainer);
      }
      // The next format's packed experts take the memory of this one's.
      clearWasmWeightCache();
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
  gateWeight.dispose();
  return rows;
}

/** Whether the relaxed-SIMD build runs (then the plain one is timed next to it). */
let relaxed = false;

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const status = wasmStatus();
  if (!status.available) throw new Error(`wasm kernels unavailable: ${status.reason}`);
  relaxed = status.simd === 'relaxed';
  const machine = {cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, simd: status.simd,
    ort: ort.env.versions?.common, ours: oursPath, loadBefore: execSync('uptime').toString().trim()};
  console.log(JSON.stringify(machine));
  const rows: Row[] = [];
  for (const width of widths) rows.push(...await benchWidth(width));
  const loadAfter = execSync('uptime').toString().trim();
  console.log(`load after: ${loadAfter}`);
  console.log(`\n| layer | format | T | threads | ORT ms | tfjs-moe wasm (${relaxed ? 'relaxed' : 'plain'}) ms | ratio | ` +
      'CPU ms ORT / ours (ratio) | plain SIMD ms (ratio; CPU ratio) | tfjs-moe JS ms | ORT-web ms (ratio) | max diff vs ORT |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.width} (H ${r.H}, I ${r.I}) | ${r.format} | ${r.T} | ${r.threads} | ${r.ortMs.toFixed(2)} | ` +
        `${r.wasmMs.toFixed(2)} | ${r.ratio.toFixed(2)} | ` +
        `${r.threads === 1 ? `${r.ortCpuMs.toFixed(1)} / ${r.wasmCpuMs.toFixed(1)} (${(r.wasmCpuMs / r.ortCpuMs).toFixed(2)})` : '-'} | ` +
        `${r.plainMs != null ? `${r.plainMs.toFixed(2)} (${(r.plainMs / r.ortMs).toFixed(2)}` +
            `${r.threads === 1 ? `; ${(r.plainCpuMs! / r.ortCpuMs).toFixed(2)}` : ''})` : '-'} | ` +
        `${r.jsMs?.toFixed(1) ?? '-'} | ` +
        `${r.ortWebMs != null ? `${r.ortWebMs.toFixed(2)} (${(r.wasmMs / r.ortWebMs).toFixed(2)})` : '-'} | ` +
        `${r.relDiffVsOrt.toExponential(1)} |`);
  }
  mkdirSync(outDir, {recursive: true});
  writeFileSync(join(outDir, 'cpu_bench.json'), JSON.stringify({machine, loadAfter, rows}, null, 1));
}

await main();
