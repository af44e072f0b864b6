/**
 * Where the host time of one prefill layer call goes on webgpu (issue 15, T = 256: the layer's enqueue cost more
 * than its GPU time in session 5's final run, 1.55 ms per call against 1.18). The op chain of
 * bench/webgpu_formats_bench.ts (router matMul, moeTopkSelect, moePermute, the two packed GEMMs, moeCombine) on
 * the Qwen3-30B-A3B layer with int4 g32 experts: after a warm-up, n calls are enqueued with a clock read around
 * each op (JavaScript time only: nothing waits for the GPU until the last read), then the same loop runs under the
 * V8 sampling profiler (node:inspector), whose hottest functions are written with the times.
 * Env: BENCH_T (256), BENCH_N (40), BENCH_SHAPE (H,I,E,K), BENCH_HALF_MATRICES=1 (the subgroup-matrix device),
 * BENCH_TF_FLAGS (a JSON object of tfjs flags set first, e.g. {"WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE": 60}),
 * BENCH_FORMAT ('int4 g32' or 'float16').
 * Build: an esbuild bundle as the formats bench (BENCHMARKS.md); writes $OUT/webgpu_host_profile.json.
 */
import * as tf from '@tensorflow/tfjs';
import {writeFileSync} from 'node:fs';
import {Session} from 'node:inspector';

import {batchedGemm, batchedGemmSwiglu, moeCombine, moePermute, moeTopkSelect, QuantizedExpertWeights}
  from '../src/index.js';
import {MOE_WEBGPU_GEMM_HALF_MATRICES} from '../src/kernels/webgpu/flags_webgpu.js';
import {HALF_MATRIX_FEATURES} from '../src/kernels/webgpu/half_matrices.js';
import {initWebGPUForNode} from '../src/node.js';
import {randomPackedWeights, toQuantized, xorshiftWords} from './random_packed.js';
import {median} from './stats.js';

const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const T = Number(process.env.BENCH_T ?? 256);
const N = Number(process.env.BENCH_N ?? 40);
const HALF = process.env.BENCH_HALF_MATRICES === '1';
const outDir = process.env.OUT ?? 'bench/results';

const STAGES = ['router', 'topk', 'permute', 'upGate', 'down', 'combine'] as const;

export interface ProfileNode {id: number, callFrame: {functionName: string, url: string, lineNumber: number},
                     children?: number[]}

/** Self and inclusive ms per function of a V8 profile, the largest first. */
export function hottest(p: {nodes: ProfileNode[], samples: number[], timeDeltas: number[]}, top: number) {
  const parent = new Map<number, number>();
  const byId = new Map(p.nodes.map(n => [n.id, n]));
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>(), total = new Map<string, number>();
  const name = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'}:${n.callFrame.lineNumber}`;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    const n = byId.get(id)!;
    self.set(name(n), (self.get(name(n)) ?? 0) + us);
    const seen = new Set<string>();
    for (let x: number | undefined = id; x != null; x = parent.get(x)) {
      const k = name(byId.get(x)!);
      if (!seen.has(k)) total.set(k, (total.get(k) ?? 0) + us);
      seen.add(k);
    }
  });
  const list = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([k, us]) => [k, Math.round(us) / 1e3]);
  return {self: list(self), total: list(total)};
}

/** fn's result and V8's sampling profile (50 us interval) of the time it ran. */
export async function underProfiler<T>(fn: () => Promise<T>):
    Promise<{result: T, profile: Parameters<typeof hottest>[0]}> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) => new Promise<unknown>((resolve, reject) =>
    session.post(method, params ?? {}, (e, r) => e != null ? reject(e) : resolve(r)));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', {interval: 50});
  await post('Profiler.start');
  const result = await fn();
  const {profile} = await post('Profiler.stop') as {profile: Parameters<typeof hottest>[0]};
  session.disconnect();
  return {result, profile};
}

async function main(): Promise<void> {
  const status = await initWebGPUForNode({dawnOptions: HALF ?
      ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] : [],
    features: HALF ? [...HALF_MATRIX_FEATURES] : [], powerPreference: 'high-performance'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, HALF);
  const flags = JSON.parse(process.env.BENCH_TF_FLAGS ?? '{}') as Record<string, number | boolean>;
  for (const [k, v] of Object.entries(flags)) tf.env().set(k, v);
  const next = xorshiftWords(0x51ed270b);
  const f = process.env.BENCH_FORMAT === 'float16' ? {label: 'float16', format: 'float16' as const} :
      {label: 'int4 g32', format: 'int4' as const, groupSize: 32};
  const up = toQuantized(randomPackedWeights(f, E, H, 2 * I, 0.02, next)) as QuantizedExpertWeights;
  const down = toQuantized(randomPackedWeights(f, E, I, H, 0.02, next)) as QuantizedExpertWeights;
  const gate = tf.tensor2d(Float32Array.from({length: H * E}, () => ((next() / 4294967296) - 0.5) * 0.1), [H, E]);
  const x = tf.tensor2d(Float32Array.from({length: T * H}, () => ((next() / 4294967296) - 0.5) * 3.4), [T, H]);
  const ms = Object.fromEntries(STAGES.map(s => [s, [] as number[]])) as Record<typeof STAGES[number], number[]>;
  const call = (timed: boolean) => tf.tidy(() => {
    let t = performance.now();
    const lap = (s: typeof STAGES[number]) => {
      const now = performance.now();
      if (timed) ms[s].push(now - t);
      t = now;
    };
    const logits = tf.matMul(x, gate) as tf.Tensor2D;
    lap('router');
    const {topkIds, topkWeights} = moeTopkSelect(logits, null, K, true);
    lap('topk');
    const {permutedX, expertOffsets, rowMap} = moePermute(x, topkIds, E);
    lap('permute');
    const act = batchedGemmSwiglu(permutedX, up, expertOffsets);
    lap('upGate');
    const y = batchedGemm(act, down, expertOffsets);
    lap('down');
    const out = moeCombine(y, rowMap, topkWeights, topkIds);
    lap('combine');
    return out;
  });
  for (let i = 0; i < 3; i++) {
    const o = call(false);
    await o.data();
    o.dispose();
  }
  const loop = async (timed: boolean) => {
    const t0 = performance.now();
    let last: tf.Tensor | null = null;
    for (let i = 0; i < N; i++) {
      last?.dispose();
      last = call(timed);
    }
    const enqueue = (performance.now() - t0) / N;
    await last!.data();
    last!.dispose();
    return {enqueueMs: enqueue, callMs: (performance.now() - t0) / N};
  };
  const plain = await loop(true);
  const {result: profiled, profile} = await underProfiler(() => loop(false));
  const stages = Object.fromEntries(STAGES.map(s => [s, median(ms[s])]));
  const out = {date: new Date().toISOString(), adapter: status.adapterInfo, shape: {H, I, E, K}, T, n: N, half: HALF,
               format: f.label, flags,
               ...plain, stageMedianMs: stages, profiled, hot: hottest(profile, 40)};
  console.log(JSON.stringify({...out, hot: undefined}));
  console.log(JSON.stringify(out.hot.self.slice(0, 20)));
  writeFileSync(`${outDir}/webgpu_host_profile${HALF ? '_half' : ''}${process.env.BENCH_TAG ?? ''}.json`,
                JSON.stringify(out, null, 1));
  tf.dispose([gate, x, ...[up, down].flatMap(q => [q.values, q.scales, q.zeroPoints])]
      .filter(t => t != null) as tf.Tensor[]);
}

// Run when this is the entry (bundled as webgpu_host_profile.mjs); webgpu_prefill_bench.ts imports hottest.
if (/webgpu_host_profile\.[mc]?js$/.test(process.argv[1] ?? '')) {
  main().then(() => process.exit(0), e => {
    console.error(e);
    process.exit(1);
  });
}
