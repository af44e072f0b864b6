/**
 * The CPU benchmark's browser half (bench/cpu_bench_browser.mjs serves and drives it in headless Chromium): the
 * 1/4-width Qwen3-30B-A3B layer (H 512, I 192, E 128, k 8) in float32, int8 g32 and int4 g32, tfjs-moe's cpu
 * backend (its wasm kernels: the page is not cross-origin isolated, so single-threaded, the 'single' module)
 * against onnxruntime-web's wasm build (com.microsoft.MoE / QMoE on the same weights and codes, 1 thread),
 * alternating calls, medians; each call creates its input and reads its output. Reports through
 * window.__benchReport(result).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as ort from 'onnxruntime-web/wasm';

import {quantizeExpertWeightsFromArray, wasmReady} from '../src/index.js';
import type {FusedMoEOptions, FusedMoEWeights, QuantizedExpertWeights} from '../src/index.js';
import {selectMoeForward} from '../src/internal.js';
import {moeBenchOptions, relDiff, uniform} from './cpu_bench_common.js';
import {MoeLayerArrays, ortMoeModelBytes, ortQMoeModelBytes, PackedProjection} from './onnx_moe_model.js';
import {median} from './stats.js';

const H = 512, I = 192, E = 128, K = 8, GROUP = 32;
const params = new URLSearchParams(location.search);
const tokens = (params.get('T') ?? '1,16,256').split(',').map(Number);
const formats = (params.get('formats') ?? 'float32,int8,int4').split(',') as Array<'float32' | 'int8' | 'int4'>;
const reps = (T: number) => T === 1 ? 25 : T <= 16 ? 11 : 5;

interface Row {
  format: string;
  T: number;
  ortWebMs: number;
  wasmMs: number;
  ratio: number;
  relDiffVsOrt: number;
}

function host(q: QuantizedExpertWeights, format: 'int8' | 'int4'): PackedProjection {
  return {format, groupSize: q.groupSize, shape: q.shape as [number, number, number],
    values: q.values.dataSync() as Int32Array, scales: q.scales!.dataSync() as Float32Array};
}

async function run(): Promise<unknown> {
  await tf.setBackend('cpu');
  const wasm = await wasmReady();
  if (!wasm.available) throw new Error(`tfjs-moe wasm kernels unavailable: ${wasm.reason}`);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/ort/';
  const w: MoeLayerArrays = {H, I, E, k: K, gate: uniform(H * E, 1 / Math.sqrt(H), 1),
    upGate: uniform(E * H * 2 * I, 1 / Math.sqrt(H), 2), down: uniform(E * I * H, 1 / Math.sqrt(I), 3)};
  const gate = tf.tensor2d(w.gate, [H, E]);
  // What a FusedMoE layer with backend 'cpu' runs (the cpu whole-layer forward).
  const layerForward = selectMoeForward('cpu').forward;
  const owner = {};
  const rows: Row[] = [];
  for (const format of formats) {
    let weights: FusedMoEWeights, options: FusedMoEOptions, model: Uint8Array, label: string = format;
    if (format === 'float32') {
      weights = {gate_weight: gate, up_gate_proj_weight: tf.tensor3d(w.upGate, [E, H, 2 * I]),
        down_proj_weight: tf.tensor3d(w.down, [E, I, H])};
      options = moeBenchOptions(E, K, I);
      model = ortMoeModelBytes(w);
    } else {
      const upGate = quantizeExpertWeightsFromArray(w.upGate, [E, H, 2 * I], format, {groupSize: GROUP});
      const down = quantizeExpertWeightsFromArray(w.down, [E, I, H], format, {groupSize: GROUP});
      weights = {gate_weight: gate, up_gate_proj_weight: upGate, down_proj_weight: down};
      options = {...moeBenchOptions(E, K, I), expertWeightFormat: format, quantGroupSize: GROUP};
      model = ortQMoeModelBytes({H, I, E, k: K, gate: w.gate, upGate: host(upGate, format), down: host(down, format)});
      label = `${format} g${GROUP}`;
    }
    const session = await ort.InferenceSession.create(model, {executionProviders: ['wasm']});
    for (const T of tokens) {
      const x = uniform(T * H, 1, 100 + T);
      const ortCall = async () =>
        (await session.run({input: new ort.Tensor('float32', x, [T, H])})).output.data as Float32Array;
      const ours = () => {
        const y = tf.tidy(() => layerForward(tf.tensor2d(x, [T, H]), weights, options, {owner}) as tf.Tensor);
        const data = y.dataSync() as Float32Array;
        y.dispose();
        return data;
      };
      const ortOut = await ortCall();
      const out = ours();
      await ortCall();
      ours();
      const ortTimes: number[] = [], ourTimes: number[] = [];
      for (let r = 0; r < reps(T); r++) {
        let t0 = performance.now();
        await ortCall();
        ortTimes.push(performance.now() - t0);
        t0 = performance.now();
        ours();
        ourTimes.push(performance.now() - t0);
      }
      const row = {format: label, T, ortWebMs: median(ortTimes), wasmMs: median(ourTimes), ratio: 0,
        relDiffVsOrt: relDiff(out, ortOut)};
      row.ratio = row.wasmMs / row.ortWebMs;
      console.log(`${label} T=${T}: onnxruntime-web ${row.ortWebMs.toFixed(2)} ms, tfjs-moe ${row.wasmMs.toFixed(2)} ms`);
      rows.push(row);
    }
    await session.release();
    tf.dispose([weights.up_gate_proj_weight, weights.down_proj_weight] as unknown as tf.TensorContainer);
  }
  return {userAgent: navigator.userAgent, crossOriginIsolated, wasm, ort: ort.env.versions, rows};
}

const report = (globalThis as unknown as {__benchReport: (r: unknown) => void}).__benchReport;
run().then(report, (e: Error) => report({error: `${e.message}\n${e.stack}`}));
