/**
 * The webgpu prefill path (src/kernels/webgpu/prefill: the op chain's programs recorded once per layer and T, then
 * replayed, encoded directly) against the op chain through tfjs (MOE_WEBGPU_PREFILL_REPLAY off), on the
 * Qwen3-30B-A3B layer (H 2048, I 768, E 128, k 8) through the FusedMoE layer's kernel path, in one process:
 * - correctness on the GPU: the replayed output against the op chain's, element for element (bit for bit expected),
 *   and at BENCH_REF_T (32) both against the float64 reference on the dequantized weights;
 * - per format and T, interleaved rounds (alternating order): ms per call with n calls queued (one read at the
 *   end) and the enqueue time per call (host), for `forward` (the layer's forward function in a tidy) and
 *   `apply` (tfjs-layers' apply around it);
 * - GPU time: the replayed forward in one timed pass (timeEncodedPrograms) and per program; the op chain's per
 *   program through tf.time (each program in its own pass, tfjs's timing).
 * Env: BENCH_FORMATS ('int4 g32,float16'), BENCH_T ('256,4096'), BENCH_ROUNDS (5), BENCH_HALF_MATRICES (1: the
 * subgroup-matrix device, as the session 6 final run), BENCH_REF_T ('32'), BENCH_QUICK=1 (SwiftShader logic check:
 * BENCH_SHAPE small). Writes $OUT/webgpu_prefill_bench.json after every row.
 */
import * as tf from '@tensorflow/tfjs';
import {mkdirSync, writeFileSync} from 'node:fs';

import {FusedMoE, QuantizedExpertWeights} from '../src/index.js';
import {MOE_WEBGPU_GEMM_HALF_MATRICES, MOE_WEBGPU_PREFILL_REPLAY, prefillDeclinedReason, prefillDispatchCount,
  selectMoeForward, timeEncodedPrograms} from '../src/internal.js';
import {MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES} from '../src/kernels/webgpu/flags_webgpu.js';
import {HALF_MATRIX_FEATURES} from '../src/kernels/webgpu/half_matrices.js';
import {initWebGPUForNode} from '../src/node.js';
import {FormatRow, HostPacked, randomPackedWeights, toQuantized, xorshiftWords} from './random_packed.js';
import {median} from './stats.js';
import {FORMATS, referenceLayer, relL2} from './webgpu_formats_bench.js';
import {hottest, underProfiler} from './webgpu_host_profile.js';

const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const TOKENS = (process.env.BENCH_T ?? '256,4096').split(',').filter(Boolean).map(Number);
const REF_T = (process.env.BENCH_REF_T ?? '32').split(',').filter(Boolean).map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const QUICK = process.env.BENCH_QUICK === '1';
const HALF = (process.env.BENCH_HALF_MATRICES ?? '1') === '1';
const outDir = process.env.OUT ?? 'bench/results';
// BENCH_PROFILE=1: the replay's enqueue loop also under V8's sampling profiler (the hottest functions by self time).
const PROFILE = process.env.BENCH_PROFILE === '1';
// BENCH_SUBMIT_AT=64,...: also the replay with the queue submitted at that many dispatches (default 8: every layer).
const SUBMIT_AT = (process.env.BENCH_SUBMIT_AT ?? '').split(',').filter(Boolean).map(Number);

function say(line: string): void {
  console.log(line);
}

function packedLayer(f: FormatRow, up: HostPacked, down: HostPacked, gate: Float32Array): FusedMoE {
  const q = {up_gate_proj_weight: toQuantized(up) as QuantizedExpertWeights,
    down_proj_weight: toQuantized(down) as QuantizedExpertWeights};
  const layer = new FusedMoE({numExperts: E, topK: K, moeIntermediateSize: I, expertWeightFormat: f.format,
    quantGroupSize: f.groupSize ?? null, quantZeroPoint: f.zeroPoint ?? false, backend: 'webgpu'}).buildFor(H, q);
  tf.dispose([q.up_gate_proj_weight, q.down_proj_weight] as unknown as tf.TensorContainer);
  const g = tf.tensor2d(gate, [H, E]);
  layer.setNamedWeights({gate_weight: g});
  g.dispose();
  return layer;
}

async function withReplay<T>(on: boolean, fn: () => Promise<T>): Promise<T> {
  const env = tf.env();
  const before = env.getBool(MOE_WEBGPU_PREFILL_REPLAY);
  env.set(MOE_WEBGPU_PREFILL_REPLAY, on);
  try {
    return await fn();
  } finally {
    env.set(MOE_WEBGPU_PREFILL_REPLAY, before);
  }
}

/** ms per call with n calls queued and one read at the end, and the enqueue time per call. */
async function throughput(run: () => tf.Tensor, n: number): Promise<{ms: number, enqueueMs: number}> {
  const t0 = performance.now();
  let last: tf.Tensor | null = null;
  for (let i = 0; i < n; i++) {
    last?.dispose();
    last = run();
  }
  const enqueueMs = (performance.now() - t0) / n;
  const probe = tf.slice(last!, [0, 0], [1, 1]);
  await probe.data();
  const ms = (performance.now() - t0) / n;
  tf.dispose([probe, last!]);
  return {ms, enqueueMs};
}

/** The n-call enqueue loop of run under V8's sampling profiler: its enqueue ms per call and the hottest functions. */
async function profiled(run: () => tf.Tensor, n: number): Promise<Record<string, unknown>> {
  const {result, profile} = await underProfiler(() => throughput(run, n));
  // ms over the n calls: divide by n for per call.
  const hot = hottest(profile, 30);
  return {...result, n, selfMs: hot.self, totalMs: hot.total};
}

function compare(got: Float32Array, want: Float32Array): {differing: number, firstDifference: number, relL2: number} {
  let differing = 0, first = -1;
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) {
      differing++;
      if (first < 0) first = i;
    }
  }
  return {differing, firstDifference: first, relL2: relL2(got, Float64Array.from(want))};
}

async function main(): Promise<void> {
  mkdirSync(outDir, {recursive: true});
  const status = await initWebGPUForNode({dawnOptions: ['disable-dawn-features=timestamp_quantization',
    ...(HALF ? ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] : [])],
    features: HALF ? [...HALF_MATRIX_FEATURES] : [], powerPreference: 'high-performance'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  await tf.setBackend('webgpu');
  tf.env().set(MOE_WEBGPU_GEMM_HALF_MATRICES, HALF);
  const results: Record<string, unknown> = {date: new Date().toISOString(), adapter: status.adapterInfo,
    shape: {H, I, E, K}, half: HALF, rows: [] as unknown[]};
  const rows = results.rows as Array<Record<string, unknown>>;
  const save = () => writeFileSync(`${outDir}/webgpu_prefill_bench.json`, JSON.stringify(results, null, 1));
  const next = xorshiftWords(0x2545f491);
  const gate = Float32Array.from({length: H * E}, () => ((next() / 4294967296) - 0.5) * 0.1);
  const {forward} = selectMoeForward('webgpu');
  const formats = (process.env.BENCH_FORMATS ?? 'int4 g32,float16').split(',');
  for (const f of FORMATS.filter(v => formats.includes(v.label))) {
    const upHost = randomPackedWeights(f, E, H, 2 * I, 0.02, next);
    const downHost = randomPackedWeights(f, E, I, H, 0.02, next);
    const layer = packedLayer(f, upHost, downHost, gate);
    const w = layer.namedWeights();
    for (const T of [...REF_T, ...TOKENS]) {
      const refOnly = !TOKENS.includes(T);
      const xData = Float32Array.from({length: T * H}, () => ((next() / 4294967296) - 0.5) * 3.4);
      const x = tf.tensor2d(xData, [T, H]);
      // The kernel path's forward gives the output alone (replay) or with its routing (the op chain).
      const viaForward = () => tf.tidy(() => {
        const r = forward(x, w, layer.options, {owner: layer});
        return r instanceof tf.Tensor ? r : r.output;
      });
      const viaApply = () => layer.apply(x) as tf.Tensor;
      const row: Record<string, unknown> = {format: f.label, T};
      try {
        const read = async (run: () => tf.Tensor) => {
          const y = run();
          const d = await y.data() as Float32Array;
          y.dispose();
          return d;
        };
        const chain = await withReplay(false, () => read(viaForward));
        // The op chain against itself: a program with atomics (tfjs's split-K matMul at small T) is not repeatable.
        row.chainVsChain = compare(await withReplay(false, () => read(viaForward)), chain);
        const recorded = await withReplay(true, () => read(viaForward));
        const replayedBefore = prefillDispatchCount();
        const replayed = await withReplay(true, () => read(viaForward));
        row.programsReplayed = prefillDispatchCount() - replayedBefore;
        row.declined = prefillDeclinedReason(layer, T);
        row.recordedVsChain = compare(recorded, chain);
        row.replayedVsChain = compare(replayed, chain);
        if (REF_T.includes(T)) {
          const want = referenceLayer(xData, T, gate, upHost, downHost);
          row.replayedVsFloat64 = relL2(replayed, want);
          row.chainVsFloat64 = relL2(chain, want);
        }
        say(`${f.label} T=${T} check ${JSON.stringify(row)}`);
        if (!refOnly) {
          const n = QUICK ? 2 : T >= 4096 ? 10 : 30;
          const variants: Record<string, () => Promise<{ms: number, enqueueMs: number}>> = {
            'chain forward': () => withReplay(false, () => throughput(viaForward, n)),
            'replay forward': () => withReplay(true, () => throughput(viaForward, n)),
            'chain apply': () => withReplay(false, () => throughput(viaApply, n)),
            'replay apply': () => withReplay(true, () => throughput(viaApply, n)),
          };
          for (const at of SUBMIT_AT) {
            variants[`replay forward, submit at ${at}`] = async () => {
              const before = tf.env().getNumber(MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES);
              tf.env().set(MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, at);
              try {
                return await withReplay(true, () => throughput(viaForward, n));
              } finally {
                tf.env().set(MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, before);
              }
            };
          }
          // Warm-up: V8 optimizes the path's JavaScript after some calls; each variant a few times first.
          for (const v of Object.values(variants)) await v();
          const samples: Record<string, Array<{ms: number, enqueueMs: number}>> = {};
          const names = Object.keys(variants);
          for (let r = 0; r < (QUICK ? 1 : ROUNDS); r++) {
            for (const name of r % 2 === 0 ? names : [...names].reverse()) {
              (samples[name] ??= []).push(await variants[name]());
            }
          }
          row.throughput = Object.fromEntries(Object.entries(samples).map(([name, s]) => [name,
            {ms: median(s.map(v => v.ms)), enqueueMs: median(s.map(v => v.enqueueMs)), samplesMs: s.map(v => v.ms)}]));
          // GPU time: the replay in one timed pass (median of 5), per program once; the chain through tfjs's timers.
          const whole: number[] = [];
          for (let i = 0; i < (QUICK ? 1 : 5); i++) {
            whole.push((await withReplay(true, () => timeEncodedPrograms(() => { viaForward().dispose(); }, 4, true)))[0][1]);
          }
          row.replayGpuMs = median(whole);
          row.replayProgramsMs = await withReplay(true, () => timeEncodedPrograms(() => { viaForward().dispose(); }, 32));
          const chainGpu: number[] = [];
          for (let i = 0; i < (QUICK ? 1 : 5); i++) {
            const p = await withReplay(false, () => tf.time(() => { viaForward().dispose(); }));
            chainGpu.push(p.kernelMs as number);
          }
          row.chainGpuMs = median(chainGpu);
          if (PROFILE) {
            row.replayProfile = await withReplay(true, () => profiled(viaForward, 4 * n));
            row.chainProfile = await withReplay(false, () => profiled(viaForward, n));
          }
        }
      } catch (e) {
        row.error = (e as Error).stack;
      }
      say(`${f.label} T=${T} ${JSON.stringify(row)}`);
      rows.push(row);
      save();
      x.dispose();
    }
    layer.dispose();
  }
  results.numTensorsAtEnd = tf.memory().numTensors;
  save();
}

main().then(() => process.exit(0), e => {
  console.error(e);
  process.exit(1);
});
