/**
 * The half-matrix (subgroup-matrix) expert GEMMs on the H200, per program on the GPU: for one Qwen3-30B-A3B layer
 * (H 2048, I 768, E 128, k 8) per format and T, (1) the GPU time of every program of a layer forward with the
 * table's choices, (2) the two expert GEMMs (upGate with SwiGLU, down) of each variant named in AB_VARIANTS, their
 * GPU times from timestamp queries per program, in interleaved rounds (the order reversed every other round),
 * medians, and (3) each variant's output against the exact program's and against a float64 reference on the
 * dequantized weights for sampled rows (the rows' experts decoded on the host). Variants: a preset name
 * (batched_gemm_config.ts), 'table' (the default choice), 'exact' (MOE_WEBGPU_GEMM_HALF_MATRICES off).
 *
 * Env: AB_FORMATS ('int4 g32,float16'), AB_T ('256'), AB_VARIANTS ('256:table,m16x128s4hb;4096:table'), AB_ROUNDS
 * (5), AB_REPS (calls per profile, 3), AB_REF_ROWS (32), AB_LAYER (1: the per-program layer times), OUT.
 * Bundled with esbuild as bench/webgpu_formats_bench.ts is (BENCHMARKS.md); writes $OUT/webgpu_matrix_ab.json.
 */
import * as tf from '@tensorflow/tfjs';
import {mkdirSync, writeFileSync} from 'node:fs';

import {batchedGemm, batchedGemmSwiglu, moeCombine, moePermute, moeTopkSelect, QuantizedExpertWeights}
  from '../src/index.js';
import {setWebGPUGemmPreset} from '../src/kernels/webgpu/batched_gemm_config.js';
import {MOE_WEBGPU_GEMM_HALF_MATRICES, MOE_WEBGPU_ROUTER_SPLIT_K} from '../src/kernels/webgpu/flags_webgpu.js';
import {routerLogits} from '../src/ops/router_logits.js';
import {DeviceLike, HALF_MATRIX_FEATURES, halfMatrixShape} from '../src/kernels/webgpu/half_matrices.js';
import {initWebGPUForNode} from '../src/node.js';
import {FormatRow, HostPacked, randomPackedWeights, toQuantized, xorshiftWords} from './random_packed.js';
import {median} from './stats.js';
import {dequantizeExpertFast, relL2} from './webgpu_formats_bench.js';

const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const FORMATS: FormatRow[] = [{label: 'int4 g32', format: 'int4', groupSize: 32}, {label: 'float16', format: 'float16'},
  {label: 'int8 g128', format: 'int8', groupSize: 128}, {label: 'bfloat16', format: 'bfloat16'},
  {label: 'int8', format: 'int8'}];
const ONLY = (process.env.AB_FORMATS ?? 'int4 g32,float16').split(',');
const TOKENS = (process.env.AB_T ?? '256').split(',').map(Number);
const VARIANTS: Record<number, string[]> = Object.fromEntries((process.env.AB_VARIANTS ?? '256:table')
    .split(';').map(p => p.split(':')).map(([t, l]) => [Number(t), l.split(',').filter(Boolean)]));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const REPS = Number(process.env.AB_REPS ?? 3);
const REF_ROWS = Number(process.env.AB_REF_ROWS ?? 32);
const outDir = process.env.OUT ?? 'bench/results';
// AB_ROUTER=0,264,...: the router (routerLogits) under each MOE_WEBGPU_ROUTER_SPLIT_K value (0: tf.matMul): its
// logits against float64 on AB_ROUTER_ROWS rows, its GPU time alone and the layer's sum, interleaved rounds.
const ROUTER_VALUES = (process.env.AB_ROUTER ?? '').split(',').filter(Boolean).map(Number);
const ROUTER_ROWS = Number(process.env.AB_ROUTER_ROWS ?? 64);
const nextWord = xorshiftWords(0x5eed1234);
const log: string[] = [];
function say(line: string): void {
  console.log(line);
  log.push(line);
}

/** Runs fn under a variant: a preset, the table's choice, or the exact tiles. */
function under<T>(variant: string, fn: () => T): T {
  tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, variant !== 'exact');
  setWebGPUGemmPreset(variant === 'table' || variant === 'exact' ? null : variant);
  try {
    return fn();
  } finally {
    setWebGPUGemmPreset(null);
    tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, true);
  }
}

/** under() for an async fn: the variant stays set until fn's promise settles. */
async function underAsync<T>(variant: string, fn: () => Promise<T>): Promise<T> {
  tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, variant !== 'exact');
  setWebGPUGemmPreset(variant === 'table' || variant === 'exact' ? null : variant);
  try {
    return await fn();
  } finally {
    setWebGPUGemmPreset(null);
    tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, true);
  }
}

/** GPU ms per kernel name, each the median over REPS calls of run inside one tf.profile. */
async function kernelTimes(run: () => tf.Tensor): Promise<Record<string, number>> {
  const p = await tf.profile(() => {
    for (let i = 0; i < REPS; i++) run().dispose();
  });
  const byName = new Map<string, number[]>();
  for (const k of p.kernels) {
    const list = byName.get(k.name) ?? [];
    list.push(Number(k.kernelTimeMs));
    byName.set(k.name, list);
  }
  // A kernel called c times per run: its calls' median times c.
  return Object.fromEntries([...byName].map(([name, t]) => [name, median(t) * t.length / REPS]));
}

/**
 * Random packed weights [E,Kd,N]: 8 distinct experts drawn (drawing all 128 float16 ones takes half a minute of
 * host time) and repeated; the GEMMs' speed does not depend on the values, and each expert keeps its own memory.
 */
function repeatedPacked(f: FormatRow, Kd: number, N: number): HostPacked {
  const distinct = Math.min(8, E);
  const p = randomPackedWeights(f, distinct, Kd, N, 0.02, nextWord);
  const repeat = <A extends Int32Array | Float32Array>(a: A): A => {
    const out = new (a.constructor as new (n: number) => A)(a.length / distinct * E);
    for (let at = 0; at < out.length; at += a.length) out.set(a.subarray(0, Math.min(a.length, out.length - at)), at);
    return out;
  };
  return {...p, shape: [E, Kd, N], values: repeat(p.values), scales: p.scales && repeat(p.scales),
          zeroPoints: p.zeroPoints && repeat(p.zeroPoints)};
}

/** float64 reference of the GEMM pair (SwiGLU between) for row r of expert e. */
function referenceRow(x: Float32Array, r: number, wu: Float64Array, wd: Float64Array): Float64Array {
  const h = new Float64Array(2 * I);
  for (let k = 0; k < H; k++) {
    const xv = x[r * H + k];
    const base = k * 2 * I;
    for (let c = 0; c < 2 * I; c++) h[c] += xv * wu[base + c];
  }
  const y = new Float64Array(H);
  for (let c = 0; c < I; c++) {
    const g = h[c];
    const a = g / (1 + Math.exp(-g)) * h[I + c];
    const base = c * H;
    for (let n = 0; n < H; n++) y[n] += a * wd[base + n];
  }
  return y;
}

/** AB_ROUTER: each value's logits vs float64, then its router and layer GPU times in interleaved rounds. */
async function routerAb(x: tf.Tensor2D, xData: Float32Array, gate: tf.Tensor2D, gateData: Float32Array, T: number,
                        forward: () => tf.Tensor): Promise<Record<string, unknown>> {
  const rowsChecked = Math.min(ROUTER_ROWS, T);
  const want = new Float64Array(rowsChecked * E);
  for (let t = 0; t < rowsChecked; t++) {
    for (let k = 0; k < H; k++) {
      const xv = xData[t * H + k];
      for (let e = 0; e < E; e++) want[t * E + e] += xv * gateData[k * E + e];
    }
  }
  const initial = tf.env().get(MOE_WEBGPU_ROUTER_SPLIT_K) as number;
  const withValue = async <R>(v: number, fn: () => Promise<R>): Promise<R> => {
    tf.env().set(MOE_WEBGPU_ROUTER_SPLIT_K, v);
    try {
      return await fn();
    } finally {
      tf.env().set(MOE_WEBGPU_ROUTER_SPLIT_K, initial);
    }
  };
  const out: Record<string, unknown> = {rowsChecked};
  const sum = (t: Record<string, number>) => Object.values(t).reduce((a, b) => a + b, 0);
  const samples: Record<number, {router: number[], layer: number[]}> = {};
  for (const v of ROUTER_VALUES) {
    const got = await withValue(v, async () => {
      const l = routerLogits(x, gate);
      const d = await l.data() as Float32Array;
      l.dispose();
      return d;
    });
    out[`vsRef_${v}`] = relL2(got.subarray(0, rowsChecked * E), want);
    samples[v] = {router: [], layer: []};
    await withValue(v, () => kernelTimes(forward));  // warm
  }
  say(`T=${T} router logits vs float64 ${JSON.stringify(out)}`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of r % 2 === 0 ? ROUTER_VALUES : [...ROUTER_VALUES].reverse()) {
      samples[v].router.push(sum(await withValue(v, () => kernelTimes(() => routerLogits(x, gate)))));
      samples[v].layer.push(sum(await withValue(v, () => kernelTimes(forward))));
    }
  }
  for (const v of ROUTER_VALUES) {
    out[`timing_${v}`] = {routerGpuMs: median(samples[v].router), layerGpuMs: median(samples[v].layer),
                          layerRounds: samples[v].layer};
    say(`T=${T} router ${v}: router ${median(samples[v].router).toFixed(4)} ms, layer ${median(samples[v].layer).toFixed(4)} ms`);
  }
  return out;
}

async function main(): Promise<void> {
  mkdirSync(outDir, {recursive: true});
  const status = await initWebGPUForNode({dawnOptions: ['disable-dawn-features=timestamp_quantization',
    'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'], features: [...HALF_MATRIX_FEATURES],
  powerPreference: 'high-performance'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  await tf.setBackend('webgpu');
  const dev = (tf.backend() as unknown as {device: DeviceLike}).device;
  const shape = halfMatrixShape(dev);
  say(`adapter ${JSON.stringify(status.adapterInfo)} half matrices ${JSON.stringify(shape)}`);
  const results: Record<string, unknown> = {date: new Date().toISOString(), shape: {H, I, E, K}, halfMatrix: shape,
                                            rounds: ROUNDS, reps: REPS, rows: []};
  const rows = results.rows as Array<Record<string, unknown>>;
  const save = () => writeFileSync(`${outDir}/webgpu_matrix_ab.json`, JSON.stringify(results, null, 1));
  const gateData = Float32Array.from({length: H * E}, () => ((nextWord() / 4294967296) - 0.5) * 0.1);
  const gate = tf.tensor2d(gateData, [H, E]);
  for (const f of FORMATS.filter(v => ONLY.includes(v.label))) {
    const t0 = performance.now();
    const upHost = repeatedPacked(f, H, 2 * I), downHost = repeatedPacked(f, I, H);
    const up = toQuantized(upHost) as QuantizedExpertWeights, down = toQuantized(downHost) as QuantizedExpertWeights;
    say(`${f.label}: weights in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    for (const T of TOKENS) {
      const xData = Float32Array.from({length: T * H}, () => ((nextWord() / 4294967296) - 0.5) * 3.4);
      const x = tf.tensor2d(xData, [T, H]);
      const forward = () => tf.tidy(() => {
        const {topkIds, topkWeights} = moeTopkSelect(routerLogits(x, gate), null, K, true);
        const {permutedX, expertOffsets, rowMap} = moePermute(x, topkIds, E);
        const act = batchedGemmSwiglu(permutedX, up, expertOffsets);
        return moeCombine(batchedGemm(act, down, expertOffsets), rowMap, topkWeights,
                          topkIds);
      });
      const routed = tf.tidy(() => {
        const {topkIds} = moeTopkSelect(routerLogits(x, gate), null, K, true);
        const {permutedX, expertOffsets} = moePermute(x, topkIds, E);
        return {px: permutedX, offsets: expertOffsets};
      });
      const gemms = () => tf.tidy(() => batchedGemm(batchedGemmSwiglu(routed.px, up,
          routed.offsets), down, routed.offsets));
      const row: Record<string, unknown> = {format: f.label, T};
      rows.push(row);
      try {
        if (process.env.AB_LAYER !== '0') {
          under('table', () => forward()).dispose();
          const layer: Array<Record<string, number>> = [];
          for (let r = 0; r < 3; r++) layer.push(await underAsync('table', () => kernelTimes(forward)));
          const names = Object.keys(layer[0]);
          row.layerPrograms = Object.fromEntries(names.map(n => [n, median(layer.map(l => l[n] ?? 0))]));
          row.layerGpuMs = median(layer.map(l => Object.values(l).reduce((a, b) => a + b, 0)));
          say(`${f.label} T=${T} layer ${JSON.stringify(row.layerPrograms)} sum ${(row.layerGpuMs as number).toFixed(4)}`);
          save();
        }
        if (ROUTER_VALUES.length > 0) row.router = await routerAb(x, xData, gate, gateData, T, forward);
        // Sampled rows and their float64 reference.
        const px = await routed.px.data() as Float32Array;
        const offsets = Array.from(await routed.offsets.data());
        const R = px.length / H;
        const sample = Array.from({length: Math.min(REF_ROWS, R)}, (_, i) => Math.floor((i + 0.5) * R / REF_ROWS));
        const cache = new Map<number, [Float64Array, Float64Array]>();
        const want = sample.map(r => {
          const e = offsets.findIndex((o, j) => j < E && r >= o && r < offsets[j + 1]);
          if (!cache.has(e)) cache.set(e, [dequantizeExpertFast(upHost, e), dequantizeExpertFast(downHost, e)]);
          const [wu, wd] = cache.get(e)!;
          return referenceRow(px, r, wu, wd);
        });
        const sampled = (y: Float32Array) => sample.flatMap(r => Array.from(y.subarray(r * H, (r + 1) * H)));
        const wantFlat = want.flatMap(w => Array.from(w));
        const exact = under('exact', gemms);
        const exactData = await exact.data() as Float32Array;
        row.exactVsRef = relL2(sampled(exactData), wantFlat);
        const device = (tf.backend() as unknown as {device: {pushErrorScope(f: string): void,
          popErrorScope(): Promise<{message: string} | null>}}).device;
        const checks: Record<string, unknown> = {};
        const variants = VARIANTS[T] ?? ['table'];
        for (const v of variants) {
          try {
            device.pushErrorScope('validation');
            const y = under(v, gemms);
            const yData = await y.data() as Float32Array;
            y.dispose();
            const error = await device.popErrorScope();
            checks[v] = error != null ? {invalid: error.message.slice(0, 300)} :
                {vsExact: relL2(yData, Float64Array.from(exactData)), vsRef: relL2(sampled(yData), wantFlat)};
          } catch (e) {
            checks[v] = {error: (e as Error).message.slice(0, 300)};
          }
          say(`${f.label} T=${T} ${v} check ${JSON.stringify(checks[v])}`);
        }
        exact.dispose();
        row.checks = checks;
        save();
        const ok = variants.filter(v => (checks[v] as {vsExact?: number}).vsExact != null);
        for (const v of ok) await underAsync(v, () => kernelTimes(gemms));  // warm every pipeline
        const samples: Record<string, Array<Record<string, number>>> = Object.fromEntries(ok.map(v => [v, []]));
        for (let r = 0; r < ROUNDS; r++) {
          const order = r % 2 === 0 ? ok : [...ok].reverse();
          for (const v of order) samples[v].push(await underAsync(v, () => kernelTimes(gemms)));
        }
        const timing: Record<string, unknown> = {};
        for (const v of ok) {
          const names = Object.keys(samples[v][0]);
          const per = Object.fromEntries(names.map(n => [n, median(samples[v].map(s => s[n] ?? 0))]));
          const totals = samples[v].map(s => Object.values(s).reduce((a, b) => a + b, 0));
          timing[v] = {programs: per, gemmsGpuMs: median(totals), rounds: totals};
          say(`${f.label} T=${T} ${v} gemms ${median(totals).toFixed(4)} ms ${JSON.stringify(per)}`);
        }
        row.timing = timing;
      } catch (e) {
        row.error = (e as Error).stack;
        say(`${f.label} T=${T} error ${(e as Error).message}`);
      }
      tf.dispose([x, routed.px, routed.offsets]);
      save();
    }
    tf.dispose([up.values, up.scales, down.values, down.scales].filter(t => t != null) as tf.Tensor[]);
  }
  save();
  writeFileSync(`${outDir}/webgpu_matrix_ab.log`, log.join('\n') + '\n');
}

main().then(() => process.exit(0), e => {
  console.error(e);
  writeFileSync(`${outDir}/webgpu_matrix_ab.log`, log.join('\n') + `\nFAILED: ${(e as Error).stack}\n`);
  process.exit(1);
});
