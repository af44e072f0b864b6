/**
 * WebGPU benchmark of the packed expert weight formats (docs/formats.md) on one Qwen3-30B-A3B MoE layer (H 2048,
 * I 768, E 128, k 8) through dawn.node: per format and T, the layer forward from our ops (gate matMul, top-k,
 * permute, batchedGemmSwiglu and batchedGemm over the packed weights, combine) and the two expert GEMMs alone,
 * throughput with n calls queued (one read at the end), their GPU time (timestamp queries), achieved GB/s of the
 * active experts' weight bytes, and the output error against a float64 reference evaluated on the dequantized
 * weights (host, T <= 16). With BENCH_ORT=1 the same weights, quantized identically, run through onnxruntime-node's
 * com.microsoft.QMoE (bench/ort_qmoe.ts) in the same process.
 *
 * The packed codes are random words drawn on the host (the quantizer would take minutes at this size), which is
 * what the GEMM speed depends on; halves are drawn with bounded exponents, scales as small positive floats.
 * Build and run: see BENCHMARKS.md (an esbuild bundle; writes $OUT/webgpu_formats_bench.json).
 */
import * as tf from '@tensorflow/tfjs';
import {mkdirSync, writeFileSync} from 'node:fs';

import {batchedGemm, batchedGemmSwiglu, FusedMoE, moeCombine, moePermute, moeTopkSelect, QuantizedExpertWeights}
  from '../src/index.js';
import {selectMoeForward} from '../src/internal.js';
import {expertWeightBytes} from '../src/formats.js';
import {setWebGPUGemmPreset} from '../src/kernels/webgpu/batched_gemm_config.js';
import {MOE_WEBGPU_GEMM_HALF_MATRICES, MOE_WEBGPU_ROUTER_SPLIT_K} from '../src/kernels/webgpu/flags_webgpu.js';
import {routerLogits} from '../src/ops/router_logits.js';
import {DeviceLike, HALF_MATRIX_FEATURES, halfMatrixShape} from '../src/kernels/webgpu/half_matrices.js';
import {initWebGPUForNode} from '../src/node.js';
import {refDequantize} from '../spec/reference/expert_formats_reference.js';
import type {OrtHooks} from './ort_qmoe.js';
import {FormatRow, HostPacked, randomPackedWeights, toQuantized, xorshiftWords} from './random_packed.js';
import {median} from './stats.js';

export type {FormatRow, HostPacked};

const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const TOKENS = (process.env.BENCH_T ?? '1,16,256,4096').split(',').map(Number);
const COPY_BYTES_PER_S = 3.39e12;  // WebGPU vec4 copy on the H200 (shared/device/README.md)
const outDir = process.env.OUT ?? 'bench/results';
const log: string[] = [];
function say(line: string): void {
  console.log(line);
  log.push(line);
}

export const FORMATS: FormatRow[] = [
  {label: 'int4 g32', format: 'int4', groupSize: 32},
  {label: 'int8 g128', format: 'int8', groupSize: 128},
  {label: 'int4 g128', format: 'int4', groupSize: 128},
  {label: 'float16', format: 'float16'},
  {label: 'bfloat16', format: 'bfloat16'},
  {label: 'int8', format: 'int8'},
  {label: 'mxfp4', format: 'mxfp4', groupSize: 32},
  {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
  {label: 'float32', format: 'float32'},
];
// Batch A (BENCHMARKS.md) swept stream16 at T = 1 / 16, tiled16 at 16 / 256, tiled64 at 256 and tiled64x128,
// tiled128x64, tiled128 at 4096 against the default choice: only tiled64x128 at 4096 came within noise of it.
// The packed stream program decodes each weight once for all the rows of its tile (TM), so at 16+ rows per
// expert it is an FMA-dense alternative to the tiled program: timed at 256 and 4096 too.
// BENCH_SWEEP='256:a,b;4096:c' replaces the list (A/B of tile shapes as data).
const PRESETS_FOR: Record<number, string[]> = process.env.BENCH_SWEEP != null ?
    Object.fromEntries(process.env.BENCH_SWEEP.split(';').map(p => p.split(':')).map(([t, l]) => [Number(t), l.split(',')])) :
    {256: ['stream16'], 4096: ['tiled64x128', 'stream16']};
// BENCH_LEAN=1: throughput only (no latency, no GPU timestamps), for sweeps.
const LEAN = process.env.BENCH_LEAN === '1';
// BENCH_HALF_MATRICES=1: the device gets the subgroup-matrix features, and each row at T >= 256 also times the
// half-matrix program (MOE_WEBGPU_GEMM_HALF_MATRICES; BENCH_MATRIX_SWEEP: its presets) and its output's relative
// L2 difference from the exact program's (whose own error vs float64 is ~3e-7).
const HALF_MATRICES = process.env.BENCH_HALF_MATRICES === '1';
const MATRIX_PRESETS = (process.env.BENCH_MATRIX_SWEEP ?? '').split(',').filter(Boolean);
// BENCH_PROFILE_T=4096,...: at these T also the GPU time of each program of one layer forward (tf.profile).
const PROFILE_T = (process.env.BENCH_PROFILE_T ?? '').split(',').filter(Boolean).map(Number);
// BENCH_LAYER_FORWARD=1: the layer rows run the FusedMoE layer's webgpu forward (the same weights, its own copy)
// instead of the op chain: at T > 16 the prefill path, which replays the op chain's programs (its GPU time under
// tf.time is the op chain's: the path steps aside for tfjs's timers).
const LAYER_FORWARD = process.env.BENCH_LAYER_FORWARD === '1';

const nextWord = xorshiftWords(0x9e3779b9);
/** Random packed weights [E,Kd,N] of the benchmark shape, from its seeded word stream (webgpu_decode_bench.ts too). */
export const randomPacked = (f: FormatRow, Kd: number, N: number, std: number) =>
  randomPackedWeights(f, E, Kd, N, std, nextWord);

function disposeWeights(q: QuantizedExpertWeights | tf.Tensor3D): void {
  if (q instanceof tf.Tensor) q.dispose();
  else tf.dispose([q.values, q.scales, q.zeroPoints].filter(t => t != null) as tf.Tensor[]);
}

/** Expert e of p, dequantized on the host by the spec's independent decoder (float64 values of the f32 weights). */
export function dequantizeExpert(p: HostPacked, e: number): Float64Array {
  const [, kd, n] = p.shape;
  if (p.format === 'float32') return Float64Array.from((p.values as Float32Array).subarray(e * kd * n, (e + 1) * kd * n));
  const per = p.format === 'int8' ? 4 : p.format === 'int4' || p.format === 'mxfp4' ? 8 : 2;
  const kw = Math.ceil(kd / per), G = p.groupSize > 0 ? Math.ceil(kd / p.groupSize) : 0;
  const sw = p.format === 'mxfp4' ? Math.ceil(n / 4) : n;
  return refDequantize({
    format: p.format, shape: [1, kd, n], transposed: false, groupSize: p.groupSize, zeroPoint: p.zeroPoint,
    values: p.values.subarray(e * kw * n, (e + 1) * kw * n),
    scales: p.scales?.subarray(e * G * sw, (e + 1) * G * sw),
    zeroPoints: p.zeroPoints?.subarray(e * G * n, (e + 1) * G * n),
  });
}

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
const HALF = (() => {
  const t = new Float32Array(65536);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, ex = (h >> 10) & 31, m = h & 1023;
    if (ex === 0) t[h] = sign * m * 2 ** -24;
    else if (ex === 31) { u[0] = ((h & 0x8000) << 16) | 0x7f800000 | (m << 13); t[h] = f[0]; }
    else t[h] = sign * (1 + m / 1024) * 2 ** (ex - 15);
  }
  return t;
})();

/**
 * Expert e of p decoded by typed loops (docs/formats.md section 3; refDequantize, the spec's decoder, takes
 * seconds per expert at this size): checked bit for bit against refDequantize on one expert per format and run.
 */
export function dequantizeExpertFast(p: HostPacked, e: number): Float64Array {
  const [, kd, n] = p.shape;
  if (p.format === 'float32') return dequantizeExpert(p, e);
  const per = p.format === 'int8' ? 4 : p.format === 'int4' || p.format === 'mxfp4' ? 8 : 2;
  const bits = 32 / per, mask = 2 ** bits - 1;
  const kw = Math.ceil(kd / per), G = p.groupSize > 0 ? Math.ceil(kd / p.groupSize) : 0;
  const out = new Float64Array(kd * n);
  const v = p.values as Int32Array;
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let k = 0; k < kd; k++) {
    const row = (e * kw + Math.floor(k / per)) * n, shift = (k % per) * bits, g = G > 0 ? Math.floor(k / p.groupSize) : 0;
    for (let c = 0; c < n; c++) {
      const code = (v[row + c] >>> shift) & mask;
      let w: number;
      switch (p.format) {
        case 'float16': w = HALF[code]; break;
        case 'bfloat16': u[0] = code << 16; w = f[0]; break;
        case 'int8': w = Math.fround((p.scales as Float32Array)[(e * G + g) * n + c] * ((code << 24) >> 24)); break;
        case 'int4': {
          const si = (e * G + g) * n + c;
          w = Math.fround((p.scales as Float32Array)[si] * (code - (p.zeroPoints ? p.zeroPoints[si] : 8)));
          break;
        }
        default: {
          const b = ((p.scales as Int32Array)[(e * G + g) * Math.ceil(n / 4) + (c >> 2)] >>> (8 * (c & 3))) & 255;
          w = b === 255 ? NaN : Math.fround(E2M1[code] * 2 ** (b - 127));
        }
      }
      out[k * n + c] = w;
    }
  }
  return out;
}

/**
 * float64 reference of the layer (docs/semantics.md: softmax over all experts, top-k, renormalised; SwiGLU with
 * the gate columns first) on the dequantized weights, experts decoded once each.
 */
export function referenceLayer(x: Float32Array, T: number, gate: Float32Array, up: HostPacked, down: HostPacked):
    Float64Array {
  const out = new Float64Array(T * H);
  const upCache = new Map<number, Float64Array>(), downCache = new Map<number, Float64Array>();
  for (let t = 0; t < T; t++) {
    const logits = new Float64Array(E);
    for (let h = 0; h < H; h++) {
      const xv = x[t * H + h];
      for (let e = 0; e < E; e++) logits[e] += xv * gate[h * E + e];
    }
    const order = Array.from({length: E}, (_, e) => e).sort((a, b) => logits[b] - logits[a] || a - b);
    const max = logits[order[0]];
    const chosen = order.slice(0, K);
    const p = chosen.map(e => Math.exp(logits[e] - max));
    const sum = p.reduce((a, b) => a + b, 0);
    for (const [j, e] of chosen.entries()) {
      if (!upCache.has(e)) upCache.set(e, dequantizeExpertFast(up, e));
      if (!downCache.has(e)) downCache.set(e, dequantizeExpertFast(down, e));
      const wu = upCache.get(e)!, wd = downCache.get(e)!;
      const hrow = new Float64Array(2 * I);
      for (let h = 0; h < H; h++) {
        const xv = x[t * H + h];
        const base = h * 2 * I;
        for (let c = 0; c < 2 * I; c++) hrow[c] += xv * wu[base + c];
      }
      const w = p[j] / sum;
      for (let c = 0; c < I; c++) {
        const g = hrow[c];
        const a = g / (1 + Math.exp(-g)) * hrow[I + c] * w;
        const base = c * H;
        for (let h = 0; h < H; h++) out[t * H + h] += a * wd[base + h];
      }
    }
  }
  return out;
}

export function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}

interface Layer {
  gate: tf.Tensor2D;
  up: QuantizedExpertWeights | tf.Tensor3D;
  down: QuantizedExpertWeights | tf.Tensor3D;
  /** With BENCH_LAYER_FORWARD=1: the same weights in a FusedMoE layer, whose forward the layer rows run. */
  fused?: FusedMoE;
}

/** The FusedMoE layer holding w's weights (a copy). */
function fusedLayer(w: Layer, f: FormatRow): FusedMoE {
  const layer = new FusedMoE({numExperts: E, topK: K, moeIntermediateSize: I, expertWeightFormat: f.format,
    quantGroupSize: f.groupSize ?? null, quantZeroPoint: f.zeroPoint ?? false, backend: 'webgpu'})
      .buildFor(H);
  layer.setNamedWeights({gate_weight: w.gate, up_gate_proj_weight: w.up, down_proj_weight: w.down});
  return layer;
}

function forward(x: tf.Tensor2D, w: Layer): tf.Tensor2D {
  const fused = w.fused;
  if (fused != null) {
    return tf.tidy(() => {
      const r = selectMoeForward('webgpu').forward(x, fused.namedWeights(), fused.options, {owner: fused});
      return r instanceof tf.Tensor ? r : r.output;
    });
  }
  return tf.tidy(() => {
    // The layer's own router op (our split-K program on webgpu unless MOE_WEBGPU_ROUTER_SPLIT_K is 0).
    const logits = routerLogits(x, w.gate);
    const {topkIds, topkWeights} = moeTopkSelect(logits, null, K, true);
    const {permutedX, expertOffsets, rowMap} = moePermute(x, topkIds, E);
    const act = batchedGemmSwiglu(permutedX, w.up as QuantizedExpertWeights, expertOffsets);
    const y = batchedGemm(act, w.down as QuantizedExpertWeights, expertOffsets);
    return moeCombine(y, rowMap, topkWeights, topkIds);
  });
}

/** ms per call with n calls queued and one read at the end (median of reps), and the enqueue time per call. */
async function throughput(run: () => tf.Tensor, n: number, reps: number): Promise<{ms: number, enqueueMs: number}> {
  for (let i = 0; i < 2; i++) {
    const o = run();
    await o.data();
    o.dispose();
  }
  const ms: number[] = [], enq: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    let last: tf.Tensor | null = null;
    for (let i = 0; i < n; i++) {
      last?.dispose();
      last = run();
    }
    enq.push((performance.now() - t0) / n);
    const probe = tf.slice(last!, [0, 0], [1, 1]);
    await probe.data();
    ms.push((performance.now() - t0) / n);
    tf.dispose([probe, last!]);
  }
  return {ms: median(ms), enqueueMs: median(enq)};
}

/** One call and the read of its whole output, median. */
async function latency(run: () => tf.Tensor, reps: number): Promise<number> {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const o = run();
    await o.data();
    t.push(performance.now() - t0);
    o.dispose();
  }
  return median(t);
}

async function gpuMs(run: () => tf.Tensor, reps = process.env.BENCH_QUICK === '1' ? 1 : 5): Promise<number> {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const p = await tf.time(() => { run().dispose(); });
    t.push(p.kernelMs as number);
  }
  return median(t);
}

/**
 * The MoE part of a model: `layers` layers with distinct weights resident at once (the codes drawn once, each
 * layer its own GPU copy and its own router), decoded one token at a time, each layer's output the next one's
 * input (no residual, no attention). ms per token with each token's output read, and with `tokens` tokens queued.
 */
async function runStack(layers: number, f: FormatRow): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const upHost = randomPacked(f, H, 2 * I, 0.02), downHost = randomPacked(f, I, H, 0.02);
  const stack: Layer[] = [];
  for (let l = 0; l < layers; l++) {
    const g = new Float32Array(H * E);
    for (let i = 0; i < g.length; i++) g[i] = ((nextWord() / 4294967296) - 0.5) * 0.1;
    stack.push({gate: tf.tensor2d(g, [H, E]), up: toQuantized(upHost), down: toQuantized(downHost)});
  }
  const x0 = tf.randomNormal([1, H]) as tf.Tensor2D;
  // Uploads happen on first use: one pass through the stack before timing.
  const token = (x: tf.Tensor2D) => {
    let y = x;
    for (const layer of stack) {
      const next = forward(y, layer);
      if (y !== x) y.dispose();
      y = next;
    }
    return y;
  };
  for (let i = 0; i < 2; i++) {
    const y = token(x0);
    await y.data();
    y.dispose();
  }
  const setupS = (performance.now() - t0) / 1e3;
  const tokens = Number(process.env.BENCH_STACK_TOKENS ?? 20);
  const each: number[] = [];
  let x = x0;
  for (let i = 0; i < tokens; i++) {
    const t1 = performance.now();
    const y = token(x);
    await y.data();
    each.push(performance.now() - t1);
    if (x !== x0) x.dispose();
    x = y;
  }
  if (x !== x0) x.dispose();
  const t2 = performance.now();
  let last: tf.Tensor2D | null = null;
  for (let i = 0; i < tokens; i++) {
    const y: tf.Tensor2D = token(last ?? x0);
    last?.dispose();
    last = y;
  }
  await last!.data();
  const pipelinedMs = (performance.now() - t2) / tokens;
  last!.dispose();
  for (const layer of stack) {
    layer.gate.dispose();
    disposeWeights(layer.up);
    disposeWeights(layer.down);
  }
  x0.dispose();
  const bytesPerExpert = (expertWeightBytes([E, H, 2 * I], f.format, {groupSize: f.groupSize, zeroPoint: f.zeroPoint}) +
                          expertWeightBytes([E, I, H], f.format, {groupSize: f.groupSize, zeroPoint: f.zeroPoint})) / E;
  const out = {format: f.label, layers, tokens, setupS, msPerToken: median(each), pipelinedMsPerToken: pipelinedMs,
               residentBytes: layers * E * bytesPerExpert,
               floorMsPerToken: 1e3 * layers * K * bytesPerExpert / COPY_BYTES_PER_S};
  say(`stack ${JSON.stringify(out)}`);
  return out;
}

/**
 * GPU ms per kernel name of one forward (tf.profile's timestamp queries; the first of two calls warms the
 * pipelines), summed over the kernel's calls, largest first: where the time outside the expert GEMMs goes.
 */
async function programTimes(run: () => tf.Tensor): Promise<Array<[string, number]>> {
  run().dispose();
  const p = await tf.profile(() => { run().dispose(); });
  const byName = new Map<string, number>();
  for (const k of p.kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + Number(k.kernelTimeMs));
  return [...byName].sort((a, b) => b[1] - a[1]).map(([name, ms]) => [name, Math.round(ms * 1e4) / 1e4]);
}

/** The half-matrix program against the exact one on the same call: times, presets, output difference. */
async function halfMatrixRow(gemms: () => tf.Tensor, layerCall: () => tf.Tensor, n: number, reps: number,
                             label = '', T = 0):
    Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  // The exact output stays alive until the half one is read, so that a half program that failed to run cannot
  // hand back the exact result in a recycled buffer (batch F's false zero difference); validation errors are caught.
  const exact = gemms();
  const exactData = await exact.data();
  const device = (tf.backend() as unknown as {device: {pushErrorScope(f: string): void,
    popErrorScope(): Promise<{message: string} | null>}}).device;
  tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, true);
  try {
    device.pushErrorScope('validation');
    const got = gemms();
    const data = await got.data();
    got.dispose();
    const error = await device.popErrorScope();
    if (error != null) out.validationError = error.message.slice(0, 600);
    out.relDiffVsExact = relL2(data, Float64Array.from(exactData));
    out.gemms = (await throughput(gemms, n, reps)).ms;
    out.layer = (await throughput(layerCall, n, reps)).ms;
    if (!LEAN) {
      out.layerGpuMs = await gpuMs(layerCall);
      out.gemmsGpuMs = await gpuMs(gemms);
    }
    // BENCH_ROUTER_AB=0,...: the layer again with MOE_WEBGPU_ROUTER_SPLIT_K at each value (0: tf.matMul), in the
    // same process, then the default again (the A/B's drift). BENCH_LAYER_AB='int4 g32=m32x128s4eru:0;...': per
    // format, the layer under a forced GEMM preset and router value (an earlier session's choices), then the
    // defaults again; only up to 24 rows per expert (the rows of the table that changed in session 8).
    const routerAb = (process.env.BENCH_ROUTER_AB ?? '').split(',').filter(Boolean).map(v => `:${v}`);
    const layerAb = (process.env.BENCH_LAYER_AB ?? '').split(';').filter(Boolean).map(e => e.split('='))
        .filter(([l]) => l === label && T * K / E <= 24).map(([, v]) => v);
    const combos = [...routerAb, ...layerAb];
    if (combos.length > 0) {
      const byValue: Record<string, unknown> = {};
      const initial = tf.env().get(MOE_WEBGPU_ROUTER_SPLIT_K) as number;
      for (const combo of [...combos, 'defaults, again']) {
        const [preset, router] = combo === 'defaults, again' ? ['', String(initial)] : combo.split(':');
        tf.env().set(MOE_WEBGPU_ROUTER_SPLIT_K, Number(router === '' || router == null ? initial : router));
        setWebGPUGemmPreset(preset === '' ? null : preset);
        try {
          byValue[combo] = {layer: (await throughput(layerCall, n, reps)).ms,
                            ...(LEAN ? {} : {layerGpuMs: await gpuMs(layerCall), gemmsGpuMs: await gpuMs(gemms)})};
        } finally {
          tf.env().set(MOE_WEBGPU_ROUTER_SPLIT_K, initial);
          setWebGPUGemmPreset(null);
        }
      }
      out.routerAb = byValue;
      say(`  layer A/B (preset:router): ${JSON.stringify(byValue)}`);
    }
    // Each preset: one checked call (validation errors, difference vs exact) before its timing.
    const presets: Record<string, unknown> = {};
    for (const preset of MATRIX_PRESETS) {
      try {
        // Inside the try: a misspelt name costs its own entry, not the presets timed before it (batch N, session 6).
        setWebGPUGemmPreset(preset);
        device.pushErrorScope('validation');
        const y = gemms();
        const yData = await y.data();
        y.dispose();
        const error = await device.popErrorScope();
        const diff = relL2(yData, Float64Array.from(exactData));
        presets[preset] = error != null ? `invalid: ${error.message.slice(0, 300)}` :
            {ms: (await throughput(gemms, n, reps)).ms, relDiffVsExact: diff};
        // Printed as it goes: a crash in a later preset keeps the earlier ones.
        say(`  matrix preset ${preset}: ${JSON.stringify(presets[preset])}`);
      } catch (e) {
        presets[preset] = `error: ${(e as Error).message.slice(0, 300)}`;
      }
    }
    setWebGPUGemmPreset(null);
    out.byPreset = presets;
  } catch (e) {
    out.error = (e as Error).message.slice(0, 600);
  } finally {
    exact.dispose();
    tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, false);
    setWebGPUGemmPreset(null);
  }
  return out;
}


export async function runFormatsBench(ort: OrtHooks | null): Promise<void> {
  mkdirSync(outDir, {recursive: true});
  // BENCH_DAWN_OPTIONS: more dawn.node options (e.g. enable-dawn-features=disable_robustness for an A/B).
  const extra = process.env.BENCH_DAWN_OPTIONS?.split(' ').filter(Boolean) ?? [];
  if (HALF_MATRICES) {
    // One enable-dawn-features option: dawn.node keeps only the last value of an option given twice.
    const at = extra.findIndex(o => o.startsWith('enable-dawn-features='));
    const toggles = 'allow_unsafe_apis,vulkan_enable_f16_on_nvidia';
    if (at >= 0) extra[at] += `,${toggles}`; else extra.push(`enable-dawn-features=${toggles}`);
  }
  const status = await initWebGPUForNode({dawnOptions: ['disable-dawn-features=timestamp_quantization', ...extra],
    features: HALF_MATRICES ? [...HALF_MATRIX_FEATURES] : [],
    powerPreference: 'high-performance'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  const adapter = {...status.adapterInfo, maxStorageBufferBindingSize: status.limits?.maxStorageBufferBindingSize};
  say(`adapter: ${JSON.stringify(adapter)}`);
  if (HALF_MATRICES) {
    await tf.setBackend('webgpu');
    const dev = (tf.backend() as unknown as {device: DeviceLike & {features: Iterable<string>}}).device;
    tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, true);
    const info = dev.adapterInfo;
    say(`half matrices: ${JSON.stringify({deviceFeatures: [...dev.features], shape: halfMatrixShape(dev),
      subgroup: [info?.subgroupMinSize, info?.subgroupMaxSize], configs: [...(info?.subgroupMatrixConfigs ?? [])]})}`);
    tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, false);
  }
  const results: Record<string, unknown> = {date: new Date().toISOString(), adapter, shape: {H, I, E, K},
                                            dawnOptions: extra};
  const rows: Array<Record<string, unknown>> = [];
  const only = process.env.BENCH_FORMATS?.split(',');
  const gateData = new Float32Array(H * E);
  for (let i = 0; i < gateData.length; i++) gateData[i] = ((nextWord() / 4294967296) - 0.5) * 0.1;
  const gate = tf.tensor2d(gateData, [H, E]);
  const xs = new Map<number, Float32Array>();
  for (const T of TOKENS) {
    const x = new Float32Array(T * H);
    for (let i = 0; i < x.length; i++) x[i] = ((nextWord() / 4294967296) - 0.5) * 3.4;
    xs.set(T, x);
  }
  for (const f of FORMATS.filter(v => only == null || only.includes(v.label))) {
    const t0 = performance.now();
    const upHost = randomPacked(f, H, 2 * I, 0.02), downHost = randomPacked(f, I, H, 0.02);
    const layer: Layer = {gate, up: toQuantized(upHost), down: toQuantized(downHost)};
    if (LAYER_FORWARD) layer.fused = fusedLayer(layer, f);
    const opts = {groupSize: f.groupSize, zeroPoint: f.zeroPoint};
    const bytesPerExpert = (expertWeightBytes([E, H, 2 * I], f.format, opts) +
                            expertWeightBytes([E, I, H], f.format, opts)) / E;
    {
      // The fast host decoder against the spec's reference decoder, one expert (bit for bit, NaN equal to NaN).
      const a = dequantizeExpertFast(downHost, 1), b = dequantizeExpert(downHost, 1);
      const bad = a.findIndex((x, i) => !Object.is(x, b[i]));
      if (bad >= 0) throw new Error(`${f.label}: host decoders differ at ${bad}: ${a[bad]} vs ${b[bad]}`);
    }
    say(`${f.label}: weights ready in ${((performance.now() - t0) / 1e3).toFixed(1)} s, ${bytesPerExpert} B/expert`);
    const ortRun = ort == null ? null : await ort.prepare(f, gateData, upHost, downHost).catch(e => {
      say(`${f.label}: ORT prepare failed: ${(e as Error).message}`);
      return null;
    });
    for (const T of TOKENS) {
      const xData = xs.get(T)!;
      const x = tf.tensor2d(xData, [T, H]);
      const routed = tf.tidy(() => {
        const {topkIds, topkWeights} = moeTopkSelect(tf.matMul(x, gate) as tf.Tensor2D, null, K, true);
        const {permutedX, expertOffsets} = moePermute(x, topkIds, E);
        return {ids: topkIds, w: topkWeights, px: permutedX, offsets: expertOffsets};
      });
      const active = new Set(await routed.ids.data()).size;
      const bytes = active * bytesPerExpert;
      const floorMs = 1e3 * bytes / COPY_BYTES_PER_S;
      const gemms = () => tf.tidy(() => batchedGemm(batchedGemmSwiglu(routed.px, layer.up as QuantizedExpertWeights,
          routed.offsets), layer.down as QuantizedExpertWeights, routed.offsets));
      // BENCH_QUICK=1: a logic check on SwiftShader (few calls).
      const quick = process.env.BENCH_QUICK === '1';
      const n = quick ? 2 : T >= 4096 ? 10 : T >= 256 ? 20 : 50, reps = quick ? 1 : 3;
      const row: Record<string, unknown> = {format: f.label, T, activeExperts: active, weightBytes: bytes, floorMs};
      try {
        row.layer = await throughput(() => forward(x, layer), n, reps);
        row.gemms = await throughput(gemms, n, reps);
        if (!LEAN) {
          row.layerLatencyMs = await latency(() => forward(x, layer), reps);
          row.layerGpuMs = await gpuMs(() => forward(x, layer));
          row.gemmsGpuMs = await gpuMs(gemms);
        }
        const presets: Record<string, number | string> = {};
        for (const preset of process.env.BENCH_PRESETS === '0' ? [] : PRESETS_FOR[T] ?? []) {
          setWebGPUGemmPreset(preset);
          try {
            presets[preset] = (await throughput(gemms, n, reps)).ms;
          } catch (e) {
            presets[preset] = `error: ${(e as Error).message.slice(0, 300)}`;
          }
        }
        setWebGPUGemmPreset(null);
        row.gemmsByPreset = presets;
        if (PROFILE_T.includes(T)) row.programs = await programTimes(() => forward(x, layer));
        if (HALF_MATRICES && T >= 64) row.half = await halfMatrixRow(gemms, () => forward(x, layer), n, reps, f.label, T);
        const gm = row.gemms as {ms: number};
        row.gemmsGBs = bytes / gm.ms / 1e6;
        row.gemmsVsFloor = gm.ms / floorMs;
        // The host reference costs seconds per format at T = 16: there only where ORT's output is compared too.
        if ((process.env.BENCH_REF_T ?? '1,16').split(',').map(Number).includes(T) && (T === 1 || ortRun != null)) {
          const out = forward(x, layer);
          const got = await out.data();
          out.dispose();
          const want = referenceLayer(xData, T, gateData, upHost, downHost);
          row.relErr = relL2(got, want);
          row.want = want;
        }
        if (ortRun != null) {
          try {
            const first = await ortRun(xData, T);
            row.ortMs = first.ms;
            row.ortVsOurs = (row.ortMs as number) / (row.layer as {ms: number}).ms;
            row.ortVsOursLatency = (row.ortMs as number) / (row.layerLatencyMs as number);
            const half = row.half as {layer?: number} | undefined;
            if (half?.layer != null) (half as Record<string, unknown>).ortVsLayer = (row.ortMs as number) / half.layer;
            if (row.want != null) row.ortRelErr = relL2(first.output, row.want as Float64Array);
          } catch (e) {
            row.ortError = (e as Error).message;
          }
        }
      } catch (e) {
        row.error = (e as Error).stack;
      }
      delete row.want;
      say(`${f.label} T=${T} ${JSON.stringify(row)}`);
      rows.push(row);
      tf.dispose([x, routed.ids, routed.w, routed.px, routed.offsets]);
      writeFileSync(`${outDir}/webgpu_formats_bench.json`, JSON.stringify({...results, rows}, null, 1));
    }
    disposeWeights(layer.up);
    disposeWeights(layer.down);
    layer.fused?.dispose();
    await ort?.release();
  }
  results.rows = rows;
  writeFileSync(`${outDir}/webgpu_formats_bench.json`, JSON.stringify(results, null, 1));
  const stack = Number(process.env.BENCH_STACK ?? 0);
  if (stack > 0) {
    results.stack = await runStack(stack, FORMATS.find(v => v.label === (process.env.BENCH_STACK_FORMAT ?? 'int4 g32'))!);
    writeFileSync(`${outDir}/webgpu_formats_bench.json`, JSON.stringify(results, null, 1));
  }
  writeFileSync(`${outDir}/webgpu_formats_bench.log`, log.join('\n') + '\n');
}

// Run when this is the entry (bundled as webgpu_formats_bench.mjs); webgpu_qmoe_bench.ts imports it instead.
if (/webgpu_formats_bench\.[mc]?js$/.test(process.argv[1] ?? '')) {
  runFormatsBench(null).then(() => process.exit(0), e => {
    console.error(e);
    writeFileSync(`${outDir}/webgpu_formats_bench.log`, log.join('\n') + `\nFAILED: ${(e as Error).stack}\n`);
    process.exit(1);
  });
}
