/**
 * WebGPU benchmark: one Qwen3-30B-A3B MoE layer (H 2048, I 768, E 128, k 8, f32 weights) at T = 1, 16, 256, 4096
 * through dawn.node, for our webgpu kernels (each batchedGemm program variant, and the default choice), the
 * composite path (plain tfjs ops), and the naive loop users write today (tf.topk, one read of the routing, then
 * per expert gather + matMul + scatter). Throughput: many forwards queued, one read at the end; latency: one
 * forward and the read of its output. Medians after warm-up. Per-kernel GPU times come from timestamp queries
 * (tf.time). Before timing, every program variant is checked against the float64 reference on this GPU.
 *
 * Build and run: see BENCHMARKS.md (an esbuild bundle run with the device's node; writes $OUT/webgpu_bench.json).
 */
// The union package: tfjs-core with chained ops and the cpu backend (the bundle keeps its side effects).
import * as tf from '@tensorflow/tfjs';
import {existsSync, mkdirSync, writeFileSync} from 'node:fs';

import {batchedGemm, batchedGemmSwiglu, fusedSwigluScale, moeCombine, moePermute, moeTopkSelect, withCompositeKernels}
  from '../src/index.js';
import {GEMM_PRESETS, setWebGPUGemmPreset} from '../src/kernels/webgpu/batched_gemm_config.js';
import {initWebGPUForNode} from '../src/node.js';
import {refBatchedGemm, refFusedMoE, refSwigluScale} from '../spec/reference/moe_reference.js';
import {median} from './stats.js';

// BENCH_SHAPE=H,I,E,k overrides the workload (a smoke run on SwiftShader uses a tiny one).
const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const TOKENS = (process.env.BENCH_T ?? '1,16,256,4096').split(',').map(Number);
const HBM_BYTES_PER_S = 2.5e12;   // measured vec4 copy on this H100 (shared/device/README.md)
const F32_FLOP_PER_S = 51e12;     // torch f32 matmul, no TF32, same GPU
const PRESETS_FOR: Record<number, string[]> = {
  1: ['stream16', 'tiled16'],
  16: ['stream16', 'tiled16'],
  256: ['tiled16', 'tiled32', 'tiled64'],
  4096: ['tiled64x128', 'tiled128x64', 'tiled128'],
};
const outDir = process.env.OUT ?? 'bench/results';
const log: string[] = [];
function say(line: string): void {
  console.log(line);
  log.push(line);
}

async function setupWebGPU(): Promise<Record<string, unknown>> {
  // Dawn rounds timestamps to 100 us unless told otherwise; per-kernel times need the real resolution.
  const status = await initWebGPUForNode({dawnOptions: ['disable-dawn-features=timestamp_quantization'],
    powerPreference: 'high-performance'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  return {...status.adapterInfo, features: status.features,
    maxStorageBufferBindingSize: status.limits?.maxStorageBufferBindingSize};
}

interface Weights {
  gate: tf.Tensor2D;     // [H,E]
  upGate: tf.Tensor3D;   // [E,H,2I]
  down: tf.Tensor3D;     // [E,I,H]
}

/**
 * The FusedMoE forward (docs/semantics.md section 7, greedy routing, no bias) from our ops, as the layer runs it on
 * webgpu: SwiGLU in the first GEMM's epilogue (`fused`), or as its own program (the chain before the fusion).
 * The composite path never fuses (its ops are plain tfjs).
 */
function forward(x: tf.Tensor2D, w: Weights, topK = K, fused = true): tf.Tensor2D {
  return tf.tidy(() => {
    const logits = tf.matMul(x, w.gate) as tf.Tensor2D;
    const {topkIds, topkWeights} = moeTopkSelect(logits, null, topK, true);
    const {permutedX, expertOffsets, rowMap} = moePermute(x, topkIds, w.upGate.shape[0]);
    const act = fused ? batchedGemmSwiglu(permutedX, w.upGate, expertOffsets) :
                        fusedSwigluScale(batchedGemm(permutedX, w.upGate, expertOffsets), null);
    const y = batchedGemm(act, w.down, expertOffsets);
    return moeCombine(y, rowMap, topkWeights, topkIds);
  });
}

/** The loop users write without this package: one read of the routing, then per expert gather/matMul/scatter. */
async function naiveForward(x: tf.Tensor2D, gate: tf.Tensor2D, upGate: tf.Tensor2D[], down: tf.Tensor2D[]):
    Promise<tf.Tensor2D> {
  const [T] = x.shape;
  const [ids, wts] = tf.tidy(() => {
    const probs = tf.softmax(tf.matMul(x, gate));
    const {values, indices} = tf.topk(probs, K);
    return [indices, values.div(values.sum(-1, true))];
  });
  const [idArr, wArr] = await Promise.all([ids.data(), wts.data()]);
  tf.dispose([ids, wts]);
  const tokens: number[][] = Array.from({length: upGate.length}, () => []);
  const weights: number[][] = Array.from({length: upGate.length}, () => []);
  for (let i = 0; i < idArr.length; i++) {
    tokens[idArr[i]].push(Math.floor(i / K));
    weights[idArr[i]].push(wArr[i]);
  }
  let out: tf.Tensor2D = tf.zeros([T, H]);
  for (let e = 0; e < upGate.length; e++) {
    if (tokens[e].length === 0) continue;
    const next = tf.tidy(() => {
      const idx = tf.tensor1d(tokens[e], 'int32');
      const h = tf.matMul(tf.gather(x, idx) as tf.Tensor2D, upGate[e]);
      const [g, u] = tf.split(h, 2, 1);
      const act = g.mul(tf.sigmoid(g)).mul(u);
      const y = tf.matMul(act, down[e]).mul(tf.tensor2d(weights[e], [tokens[e].length, 1]));
      return out.add(tf.scatterND(idx.expandDims(1), y, [T, H])) as tf.Tensor2D;
    });
    out.dispose();
    out = next;
  }
  return out;
}


/** Throughput (ms per forward, n queued, one read) and single-call latency (ms, forward + read), medians. */
async function timeIt(run: () => tf.Tensor | Promise<tf.Tensor>, n: number, reps: number, warmup = 2):
    Promise<{throughputMs: number, latencyMs: number, enqueueMs: number}> {
  for (let i = 0; i < warmup; i++) {
    const o = await run();
    await o.data();
    o.dispose();
  }
  const thr: number[] = [], enq: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const outs: tf.Tensor[] = [];
    for (let i = 0; i < n; i++) {
      const o = await run();
      if (i === n - 1) enq.push((performance.now() - t0) / n);
      // One read at the end; a one-element slice so the copy-out of a large output is not charged n times.
      if (i < n - 1) {
        outs.push(o);
      } else {
        const probe = tf.slice(o, Array(o.rank).fill(0), Array(o.rank).fill(1));
        await probe.data();
        tf.dispose([probe, o]);
      }
    }
    thr.push((performance.now() - t0) / n);
    tf.dispose(outs);
  }
  const lat: number[] = [];
  for (let r = 0; r < Math.max(warmup > 1 ? 3 : 1, reps); r++) {
    const t0 = performance.now();
    const o = await run();
    await o.data();
    lat.push(performance.now() - t0);
    o.dispose();
  }
  return {throughputMs: median(thr), latencyMs: median(lat), enqueueMs: median(enq)};
}

/** Every batchedGemm variant and a small whole forward against the float64 reference, on this GPU. */
async function checkCorrectness(): Promise<Record<string, number>> {
  const errs: Record<string, number> = {};
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
  const R = 300, KD = 64, N = 96, NE = 6;
  const counts = [40, 0, 100, 7, 90, 33];
  const offsets = [0];
  for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
  const lhs = Float32Array.from({length: R * KD}, rand), rhs = Float32Array.from({length: NE * KD * N}, rand);
  const bias = Float32Array.from({length: NE * N}, rand);
  for (const transposeRhs of [false, true]) {
    const want = refBatchedGemm(lhs, R, KD, rhs, NE, N, offsets, transposeRhs, bias);
    for (const preset of Object.keys(GEMM_PRESETS)) {
      setWebGPUGemmPreset(preset);
      const out = tf.tidy(() => batchedGemm(tf.tensor2d(lhs, [R, KD]),
          tf.tensor3d(rhs, transposeRhs ? [NE, N, KD] : [NE, KD, N]), tf.tensor1d(offsets, 'int32'),
          {transposeRhs, bias: tf.tensor2d(bias, [NE, N])}));
      const got = await out.data();
      out.dispose();
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        maxRef = Math.max(maxRef, Math.abs(want[i]));
      }
      errs[`batchedGemm ${preset}${transposeRhs ? ' transposeRhs' : ''}`] = maxDiff / maxRef;
    }
  }
  // The SwiGLU epilogue (transposeRhs false only): N = 96 -> I = 48, with bias and a row scale.
  {
    const scale = Float32Array.from({length: R}, rand);
    const want = refSwigluScale(refBatchedGemm(lhs, R, KD, rhs, NE, N, offsets, false, bias), R, N / 2, scale);
    for (const preset of Object.keys(GEMM_PRESETS)) {
      setWebGPUGemmPreset(preset);
      const out = tf.tidy(() => batchedGemmSwiglu(tf.tensor2d(lhs, [R, KD]), tf.tensor3d(rhs, [NE, KD, N]),
          tf.tensor1d(offsets, 'int32'), {bias: tf.tensor2d(bias, [NE, N]), scale: tf.tensor1d(scale)}));
      const got = await out.data();
      out.dispose();
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        maxRef = Math.max(maxRef, Math.abs(want[i]));
      }
      errs[`batchedGemmSwiglu ${preset}`] = maxDiff / maxRef;
    }
  }
  setWebGPUGemmPreset(null);
  // Whole forward, small layer.
  const h = 128, inter = 48, ne = 16, k = 4;
  const wts = {gateWeight: Float32Array.from({length: h * ne}, rand),
               upGateProjWeight: Float32Array.from({length: ne * h * 2 * inter}, rand),
               downProjWeight: Float32Array.from({length: ne * inter * h}, rand)};
  for (const T of [1, 37, 300]) {
    const x = Float32Array.from({length: T * h}, rand);
    const w: Weights = {gate: tf.tensor2d(wts.gateWeight, [h, ne]),
                        upGate: tf.tensor3d(wts.upGateProjWeight, [ne, h, 2 * inter]),
                        down: tf.tensor3d(wts.downProjWeight, [ne, inter, h])};
    const xt = tf.tensor2d(x, [T, h]);
    const out = forward(xt, w, k);
    const got = await out.data();
    tf.dispose([out, xt, w.gate, w.upGate, w.down]);
    const want = refFusedMoE(x, T, h, wts, {numExperts: ne, topK: k, intermediateSize: inter, topkMethod: 'greedy',
        nGroup: 1, topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
        withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false});
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < want.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      maxRef = Math.max(maxRef, Math.abs(want[i]));
    }
    errs[`forward T=${T}`] = maxDiff / maxRef;
  }
  return errs;
}

async function main(): Promise<void> {
  mkdirSync(outDir, {recursive: true});
  const adapter = await setupWebGPU();
  say(`adapter: ${JSON.stringify(adapter)}`);
  const results: Record<string, unknown> = {date: new Date().toISOString(), adapter, shape: {H, I, E, K}};
  // CPU cost of one tfjs webgpu dispatch here (a tiny add, 500 queued, one read): what bounds the decode step.
  {
    const a = tf.ones([4]);
    const r = await timeIt(() => tf.add(a, a), 500, 3);
    results.dispatchOverheadUs = r.throughputMs * 1e3;
    say(`tfjs webgpu dispatch overhead: ${(r.throughputMs * 1e3).toFixed(1)} us per op`);
    a.dispose();
  }
  const correctness = await checkCorrectness();
  say(`correctness (rel. error vs float64): ${JSON.stringify(correctness)}`);
  results.correctness = correctness;

  // Weights: one random expert tiled (a 2.4 GB random fill from JS would dominate the run), scaled per expert.
  const scale = tf.range(1, E + 1).div(E).reshape([E, 1, 1]);
  const w: Weights = tf.tidy(() => ({
    gate: tf.randomNormal([H, E], 0, 0.05) as tf.Tensor2D,
    upGate: tf.tile(tf.randomNormal([1, H, 2 * I], 0, 0.02), [E, 1, 1]).mul(scale) as tf.Tensor3D,
    down: tf.tile(tf.randomNormal([1, I, H], 0, 0.02), [E, 1, 1]).mul(scale) as tf.Tensor3D,
  }));
  const perTokenFlops = 2 * K * (H * 2 * I + I * H);
  const perExpertBytes = 4 * (H * 2 * I + I * H);
  const rows: Array<Record<string, unknown>> = [];
  for (const T of TOKENS) {
    const x = tf.randomNormal([T, H]) as tf.Tensor2D;
    const ids = tf.tidy(() => moeTopkSelect(tf.matMul(x, w.gate) as tf.Tensor2D, null, K, true).topkIds);
    const active = new Set(await ids.data()).size;
    ids.dispose();
    const floorMs = 1e3 * Math.max(active * perExpertBytes / HBM_BYTES_PER_S, T * perTokenFlops / F32_FLOP_PER_S);
    const n = T >= 4096 ? 10 : T >= 256 ? 20 : 50;
    const reps = T >= 4096 ? 3 : 5;
    const row: Record<string, unknown> = {T, activeExperts: active, floorMs};
    const variants: Record<string, {throughputMs: number, latencyMs: number, enqueueMs: number}> = {};
    const presets = process.env.BENCH_PRESETS === '0' ? [] : PRESETS_FOR[T] ?? [];
    for (const preset of [null, ...presets]) {
      setWebGPUGemmPreset(preset);
      variants[preset ?? 'default'] = await timeIt(() => forward(x, w), n, reps);
      say(`T=${T} ours[${preset ?? 'default'}] ${JSON.stringify(variants[preset ?? 'default'])}`);
    }
    setWebGPUGemmPreset(null);
    // The same chain without the SwiGLU epilogue (the numbers before the fusion), timed in the same run.
    variants.unfused = await timeIt(() => forward(x, w, K, false), n, reps);
    say(`T=${T} ours[unfused] ${JSON.stringify(variants.unfused)}`);
    row.ours = variants;
    // Per-kernel GPU time (timestamp queries) for the default choice.
    const profile = await tf.time(() => { forward(x, w).dispose(); });
    row.kernelMs = profile.kernelMs;
    const extra = (profile as unknown as {getExtraProfileInfo?: () => string}).getExtraProfileInfo;
    row.kernels = typeof extra === 'function' ? extra() : null;
    say(`T=${T} kernels: ${JSON.stringify(row.kernelMs)} ${row.kernels}`);
    if (process.env.BENCH_COMPOSITE === '0') {
      row.composite = null;
    } else try {
      // The composite path gathers weights per row: slow at large T, so one warm-up and one timed forward there.
      row.composite = T >= 256 ? await timeIt(() => withCompositeKernels(() => forward(x, w, K, false)), 1, 1, 1) :
                                 await timeIt(() => withCompositeKernels(() => forward(x, w, K, false)), 5, 2);
    } catch (e) {
      row.composite = {error: (e as Error).message};
    }
    say(`T=${T} composite ${JSON.stringify(row.composite)}`);
    x.dispose();
    rows.push(row);
    writeFileSync(`${outDir}/webgpu_bench.json`, JSON.stringify({...results, rows}, null, 1));
  }
  // The naive loop holds per-expert weights, as HF's ModuleList does.
  const upGateList = tf.unstack(w.upGate) as tf.Tensor2D[];
  const downList = tf.unstack(w.down) as tf.Tensor2D[];
  for (const row of process.env.BENCH_NAIVE === '0' ? [] : rows) {
    const T = row.T as number;
    const x = tf.randomNormal([T, H]) as tf.Tensor2D;
    row.naive = await timeIt(() => naiveForward(x, w.gate, upGateList, downList), T >= 256 ? 1 : 3, 2);
    say(`T=${T} naive ${JSON.stringify(row.naive)}`);
    x.dispose();
    writeFileSync(`${outDir}/webgpu_bench.json`, JSON.stringify({...results, rows}, null, 1));
  }
  results.rows = rows;
  writeFileSync(`${outDir}/webgpu_bench.json`, JSON.stringify(results, null, 1));
  writeFileSync(`${outDir}/webgpu_bench.log`, log.join('\n') + '\n');
  if (!existsSync(`${outDir}/webgpu_bench.json`)) throw new Error('result file missing');
}

main().then(() => process.exit(0), e => {
  console.error(e);
  writeFileSync(`${outDir}/webgpu_bench.log`, log.join('\n') + `\nFAILED: ${(e as Error).stack}\n`);
  process.exit(1);
});
