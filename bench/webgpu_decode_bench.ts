/**
 * WebGPU decode benchmark (issue 14): one Qwen3-30B-A3B MoE layer (H 2048, I 768, E 128, k 8, f32) through the
 * FusedMoE layer, before (the op chain: setWebGPUDecodeMaxTokens(0)) and after (the four-program decode path),
 * in ONE run:
 *  - throughput (n forwards queued, one read), JavaScript enqueue time per forward, latency (forward + await data())
 *    at T = 1, 2, 4, 8, 16, 32 (the crossover), and the layer at T = 256 and 4096 (the op chain either way);
 *  - GPU time per program (timestamp queries: tf.time for the chain, timeEncodedPrograms for ours) at T = 1, 2 and
 *    16; at T <= 2 the folded variant (3 programs: routing inside upGate) against the 4 programs;
 *  - programs per forward (tfjs's runWebGPUProgram calls + our dispatches);
 *  - the decode tiles (setWebGPUDecodeTiles) at T = 1 and 16;
 *  - a 48-layer stack of such layers (distinct weights, all resident) decoding one token at a time: ms/token with
 *    the read of each token's output (latency) and pipelined (tokens queued), tokens/s;
 *  - before timing: the decode path against the float64 reference (small layers, every option) and against the op
 *    chain on the Qwen3 layer, on this GPU.
 *  - BENCH_T1_VARIANTS=1: float32 T = 1 launch variants of the down program (items, unroll, column tiles; folded or
 *    4 programs) by GPU time of the whole forward and per program, and the marginal GPU cost of each program (the
 *    forward with programs left out) and of empty dispatches (issue 14's T = 1 GPU target);
 *  - BENCH_PACKED=labels (bench/webgpu_formats_bench.ts FORMATS): the layer with packed experts (random codes) at
 *    BENCH_PACKED_T, op chain vs decode path, GPU time, error against the float64 reference on the dequantized
 *    weights at T = 1, launch-shape candidates at T = 1 and 16; BENCH_PACKED_STACK=n an n-layer stack in the first
 *    listed format (issue 15's model scale).
 * Build and run: see BENCHMARKS.md (esbuild bundle into .device/, run with the device's node; writes
 * $OUT/webgpu_decode_bench.json and .log). BENCH_STACK=n sets the stack depth (0: skip).
 */
import * as tf from '@tensorflow/tfjs';
import {mkdirSync, writeFileSync} from 'node:fs';

import {FusedMoE, FusedMoEArgs, QuantizedExpertWeights, setWebGPUDecodeMaxTokens} from '../src/index.js';
import {decodeDispatchCount, setWebGPUDecodeTiles, timeEncodedPrograms, tunedDecodeTiles} from '../src/internal.js';
import type {DecodeTilesOverride} from '../src/kernels/webgpu/decode/decode_forward.js';
import {selectMoeForward} from '../src/layers/backend_selection.js';
import {initWebGPUForNode} from '../src/node/webgpu.js';
import {refFusedMoE} from '../spec/reference/moe_reference.js';
import {ortQMoeHooks} from './ort_qmoe.js';
import {toQuantized} from './random_packed.js';
import {timePassMs} from './webgpu_pass_timing.js';
import {FORMATS, FormatRow, HostPacked, randomPacked, referenceLayer, relL2} from './webgpu_formats_bench.js';

const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);
const TOKENS = (process.env.BENCH_T ?? '1,2,4,8,16,32').split(',').filter(s => s !== '').map(Number);
const LARGE_T = (process.env.BENCH_LARGE_T ?? '256,4096').split(',').filter(s => s !== '').map(Number);
const STACK = Number(process.env.BENCH_STACK ?? 48);
const STARTED = performance.now();
/** BENCH_QUICK=1: a dry run of the logic (SwiftShader, tiny shapes): every count cut to a few. */
const QUICK = process.env.BENCH_QUICK === '1';
/** Seconds the run may take (run.sh's timeout); the launch-shape sweeps are skipped past half of it. */
const BUDGET_S = Number(process.env.BENCH_BUDGET_S ?? 1e9);
const SWEEP_T = (process.env.BENCH_SWEEP_T ?? '1,2,4,8,16').split(',').filter(s => s !== '').map(Number);
/** '1': every T = 1 variant; 'confirm': the table against batch D's T = 1 choice and 4 programs only. */
const T1_VARIANTS = process.env.BENCH_T1_VARIANTS === '1' || process.env.BENCH_T1_VARIANTS === 'confirm';
const T1_CONFIRM = process.env.BENCH_T1_VARIANTS === 'confirm';
const PACKED = (process.env.BENCH_PACKED ?? '').split(',').filter(s => s !== '');
/** T of the first listed format, and of the others; launch-shape candidates for the first BENCH_PACKED_SWEEP formats. */
const PACKED_T = (process.env.BENCH_PACKED_T ?? '1,2,4,8,16').split(',').filter(s => s !== '').map(Number);
const PACKED_T_REST = (process.env.BENCH_PACKED_T_REST ?? '1,16').split(',').filter(s => s !== '').map(Number);
const PACKED_SWEEP = Number(process.env.BENCH_PACKED_SWEEP ?? 3);
const PACKED_STACK = Number(process.env.BENCH_PACKED_STACK ?? 0);
/** Packed formats whose layer also runs as ORT's QMoE in this process (ort_qmoe.ts; '' none), on BENCH_ORT_EP. */
const ORT_FORMATS = (process.env.BENCH_ORT ?? '').split(',').filter(s => s !== '');
/** BENCH_ENTRIES=0: skip the float32 T = 1 timing by entry (layer.apply, call, forward, readback floor). */
const ENTRIES = process.env.BENCH_ENTRIES !== '0';
/** The tiles main chose before the tuning table (H200 run 2's defaults), timed beside the table's choice. */
const RUN2_TILES = (T: number): DecodeTilesOverride => ({upRows: 16, routerPartials: 16384, routeLanes: 256,
  routeTopk: 'rounds', ...(T <= 2 ? {upNv: 8, upKs: 32, downNv: 4, downKs: 64} : {upNv: 16, upKs: 16, downNv: 8, downKs: 32})});
const COPY_BYTES_PER_S = 3.39e12;  // H200 WebGPU vec4 copy (shared/device/README.md)
const outDir = process.env.OUT ?? 'bench/results';
const log: string[] = [];
const results: Record<string, unknown> = {date: new Date().toISOString(), shape: {H, I, E, K}};
function say(line: string): void {
  const stamped = `[${((performance.now() - STARTED) / 1e3).toFixed(1)} s] ${line}`;
  console.log(stamped);
  log.push(stamped);
}
function save(): void {
  writeFileSync(`${outDir}/webgpu_decode_bench.json`, JSON.stringify(results, null, 1));
  writeFileSync(`${outDir}/webgpu_decode_bench.log`, log.join('\n') + '\n');
}

/**
 * The tfjs device through the package's bootstrap, with the device features of BENCH_FEATURES (comma-separated;
 * default 'subgroups', as initWebGPUForNode's default; '' none: the decode route without subgroups).
 */
async function setupWebGPU(): Promise<Record<string, unknown>> {
  const features = (process.env.BENCH_FEATURES ?? 'subgroups').split(',').filter(f => f !== '');
  const status = await initWebGPUForNode({dawnOptions: ['disable-dawn-features=timestamp_quantization'], features,
    powerPreference: 'high-performance', adapter: QUICK ? 'any' : 'hardware'});
  if (!status.available) throw new Error(`no WebGPU: ${status.reason}`);
  const device = (tf.backend() as unknown as {device: {features: Iterable<string>,
    limits: {maxComputeWorkgroupStorageSize: number}}}).device;
  return {...status.adapterInfo, maxStorageBufferBindingSize: status.limits?.maxStorageBufferBindingSize,
          maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
          deviceFeatures: [...device.features].sort()};
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Timing {throughputMs: number, enqueueMs: number, latencyMs: number}

/** Throughput: n forwards queued then one read of a 1-element slice; enqueue: JS time per forward; latency. */
async function timeIt(run: () => tf.Tensor, n: number, reps: number): Promise<Timing> {
  if (QUICK) [n, reps] = [2, 1];
  for (let i = 0; i < 3; i++) {
    const o = run();
    await o.data();
    o.dispose();
  }
  const thr: number[] = [], enq: number[] = [];
  for (let r = 0; r < reps; r++) {
    const outs: tf.Tensor[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) outs.push(run());
    enq.push((performance.now() - t0) / n);
    const last = outs[outs.length - 1];
    const probe = tf.slice(last, Array(last.rank).fill(0), Array(last.rank).fill(1));
    await probe.data();
    thr.push((performance.now() - t0) / n);
    tf.dispose([probe, ...outs]);
  }
  const lat: number[] = [];
  for (let r = 0; r < (QUICK ? 1 : Math.max(5, reps)); r++) {
    const t0 = performance.now();
    const o = run();
    await o.data();
    lat.push(performance.now() - t0);
    o.dispose();
  }
  return {throughputMs: median(thr), enqueueMs: median(enq), latencyMs: median(lat)};
}

/** tfjs programs + decode programs dispatched by one call of fn. */
function programsPerForward(fn: () => tf.Tensor): number {
  const backend = tf.backend() as unknown as {runWebGPUProgram: (...a: unknown[]) => unknown};
  const original = backend.runWebGPUProgram;
  let n = 0;
  backend.runWebGPUProgram = function(this: unknown, ...a: unknown[]) { n++; return original.apply(this, a); };
  const before = decodeDispatchCount();
  try {
    fn().dispose();
  } finally {
    backend.runWebGPUProgram = original;
  }
  return n + decodeDispatchCount() - before;
}

let seed = 11;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 4294967296 - 0.5;
}
function randArray(n: number, scale: number): Float32Array {
  return Float32Array.from({length: n}, () => (rand() + rand() + rand()) * scale);
}

/** Small layers, every option of the path, against the float64 reference on this GPU. */
async function checkAgainstReference(): Promise<Record<string, number>> {
  const errs: Record<string, number> = {};
  const cases: Array<[string, Partial<FusedMoEArgs>, number, number]> = [
    ['greedy', {}, 64, 1], ['greedy T=16', {}, 64, 16],
    ['bias+correction', {withBias: true, useCorrectionBias: true}, 32, 3],
    ['probInAdvance', {probInAdvance: true, withBias: true}, 32, 5],
    ['noaux_tc', {topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true},
     32, 4],
    ['shared+gate', {sharedExpertIntermediateSize: 64, sharedExpertGate: true}, 64, 2],
  ];
  for (const [label, extra, h, T] of cases) {
    const layer = new FusedMoE({numExperts: 16, topK: 4, moeIntermediateSize: 32, kernelInitializer: 'zeros',
      ...extra} as FusedMoEArgs).buildFor(h);
    const data: Record<string, Float32Array> = {};
    const values: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(layer.namedWeights())) {
      data[name] = randArray((t as tf.Tensor).size, name === 'gate_weight' ? 0.5 : 0.2);
      values[name] = tf.tensor(data[name], (t as tf.Tensor).shape);
    }
    layer.setNamedWeights(values);
    tf.dispose(Object.values(values));
    const xv = randArray(T * h, 1);
    const x = tf.tensor2d(xv, [T, h]);
    const before = decodeDispatchCount();
    const out = layer.apply(x) as tf.Tensor;
    if (decodeDispatchCount() - before !== 4) throw new Error(`${label}: the decode path did not run`);
    const got = await out.data();
    tf.dispose([x, out]);
    const o = layer.options;
    const want = refFusedMoE(xv, T, h, {gateWeight: data.gate_weight, gateCorrectionBias: data.gate_correction_bias,
      upGateProjWeight: data.up_gate_proj_weight, upGateProjBias: data.up_gate_proj_bias,
      downProjWeight: data.down_proj_weight, downProjBias: data.down_proj_bias,
      sharedUpGateProjWeight: data.shared_up_gate_proj_weight, sharedDownProjWeight: data.shared_down_proj_weight,
      sharedExpertGateWeight: data.shared_expert_gate_weight}, {numExperts: o.numExperts, topK: o.topK,
      intermediateSize: o.moeIntermediateSize, topkMethod: o.topkMethod, nGroup: o.nGroup, topkGroup: o.topkGroup,
      routedScalingFactor: o.routedScalingFactor, renormalize: o.renormalize, useCorrectionBias: o.useCorrectionBias,
      latentSize: o.latentSize, withBias: o.withBias, probInAdvance: o.probInAdvance,
      sharedExpertIntermediateSize: o.sharedExpertIntermediateSize, sharedExpertGate: o.sharedExpertGate});
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < want.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      maxRef = Math.max(maxRef, Math.abs(want[i]));
    }
    errs[label] = maxDiff / maxRef;
    layer.dispose();
  }
  return errs;
}

/**
 * A Qwen3-30B-A3B layer whose weights are made on the GPU by its initializer (one random expert tiled, scaled per
 * expert and per layer): tfjs's own initializers would fill 2.4 GB per layer in JavaScript.
 */
function qwenLayer(base: {gate: tf.Tensor2D, up: tf.Tensor3D, down: tf.Tensor3D}, layerIndex: number): FusedMoE {
  const f = 1 + 0.01 * layerIndex;
  const init = {
    apply: (shape: number[]) => tf.tidy(() => {
      if (shape.length === 2) return base.gate.mul(f);
      const scale = tf.range(1, E + 1).div(E).mul(f).reshape([E, 1, 1]);
      return tf.tile(shape[1] === H && shape[2] === 2 * I ? base.up : base.down, [E, 1, 1]).mul(scale);
    }),
    getClassName: () => 'BenchTiledRandom',
    getConfig: () => ({}),
  };
  return new FusedMoE({numExperts: E, topK: K, moeIntermediateSize: I,
    kernelInitializer: init as unknown as FusedMoEArgs['kernelInitializer'], backend: 'webgpu'}).buildFor(H);
}

/** Medians of whole-forward GPU times (one timed pass per forward), with the programs in `skip` left out. */
async function wholeForwardMs(apply: () => tf.Tensor, reps: number, skip: string[] = []): Promise<number> {
  const t: number[] = [];
  for (let r = 0; r < (QUICK ? 1 : reps); r++) {
    t.push((await timeEncodedPrograms(() => { apply().dispose(); }, 4, true, skip))[0][1]);
  }
  return median(t);
}

async function perProgramMs(apply: () => tf.Tensor, reps = 9): Promise<Record<string, number>> {
  const perProgram: Record<string, number[]> = {};
  for (let r = 0; r < (QUICK ? 1 : reps); r++) {
    const times = await timeEncodedPrograms(() => { apply().dispose(); });
    for (const [name, ms] of times) (perProgram[name] ??= []).push(ms);
  }
  const gpu: Record<string, number> = {};
  for (const [name, ms] of Object.entries(perProgram)) gpu[name] = median(ms);
  gpu.sum = Object.values(gpu).reduce((s, v) => s + v, 0);
  return gpu;
}

function relMaxDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return maxDiff / maxRef;
}

/** GPU time of n dispatches of an empty program (and of a 1-workgroup program writing one shared word) in one pass. */
async function emptyDispatchMs(): Promise<Record<string, number>> {
  const device = (tf.backend() as unknown as {device: any}).device;
  const make = (code: string) => device.createComputePipeline({layout: 'auto',
    compute: {module: device.createShaderModule({code}), entryPoint: 'main'}});
  const empty = make('@compute @workgroup_size(256) fn main() {}');
  const writer = make(`@group(0) @binding(0) var<storage, read_write> b : array<u32>;
    @compute @workgroup_size(256) fn main(@builtin(local_invocation_index) i : u32) { if (i == 0u) { b[0] = b[0] + 1u; } }`);
  const buf = device.createBuffer({size: 16, usage: 0x80});
  const group = device.createBindGroup({layout: writer.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer: buf}}]});
  const out: Record<string, number> = {};
  for (const [name, pipe, n, wgs] of [['empty x1', empty, 1, 1], ['empty x4', empty, 4, 1], ['empty 512 wgs x1', empty, 1, 512],
    ['dependent writer x1', writer, 1, 1], ['dependent writer x4', writer, 4, 1]] as const) {
    const t: number[] = [];
    for (let r = 0; r < (QUICK ? 1 : 9); r++) {
      t.push(await timePassMs(device, pipe, pipe === writer ? group : null, n, wgs));
    }
    out[name] = median(t);
  }
  buf.destroy();
  return out;
}

/**
 * Keeps the GPU busy for about `ms` (forwards queued in batches, one read per batch): the H200 lowers its clocks
 * when idle (batch E: a layer timed right after seconds of host work took up to 3x its warm time), so every timed
 * section starts warm.
 */
async function warmGpu(run: () => tf.Tensor, ms: number): Promise<void> {
  const t0 = performance.now();
  do {
    const outs: tf.Tensor[] = [];
    for (let i = 0; i < 50; i++) outs.push(run());
    await outs[outs.length - 1].data();
    tf.dispose(outs);
  } while (!QUICK && performance.now() - t0 < ms);
}

/**
 * Float32 T = 1 (issue 14's GPU target): launch variants (the router's partial logits summed spread over the
 * route's threads, the router unrolled, fewer splits, a smaller route workgroup; folded or 4 programs) by GPU
 * time of the whole forward (one pass), interleaved: every variant once per round, medians over the rounds; per
 * program and throughput; then the marginal cost of each program (whole forward with programs left out: the
 * others read the buffers the previous forward left) and of empty dispatches.
 */
async function t1Variants(layer: FusedMoE): Promise<Record<string, unknown>> {
  setWebGPUDecodeMaxTokens(32);
  const x = tf.randomNormal([1, H]) as tf.Tensor2D;
  const apply = () => layer.apply(x) as tf.Tensor;
  const tuned = tunedDecodeTiles({T: 1, H, I, E, K});
  const four = {...tuned, fold: false};
  const spread = {routeLoads: 'spread' as const};
  const batchD: DecodeTilesOverride = {upNv: 8, upKs: 32, downNv: 2, downKs: 128, upRows: 16, routerPartials: 16384,
    routeLanes: 256, routeTopk: 'rounds', fold: true};
  const variants: Record<string, DecodeTilesOverride | null> = T1_CONFIRM ? {table: null, batchD, fourPrograms: four} : {
    table: null,
    fourPrograms: four,
    spread: {...tuned, ...spread},
    fourPrograms_spread: {...four, ...spread},
    spread_ru4: {...tuned, ...spread, routerUnroll: 4},
    spread_ru8: {...tuned, ...spread, routerUnroll: 8},
    fourPrograms_spread_ru4: {...four, ...spread, routerUnroll: 4},
    fourPrograms_spread_ru8: {...four, ...spread, routerUnroll: 8},
    fourPrograms_spread_route64: {...four, ...spread, routeThreads: 64},
    fourPrograms_spread_route64_ru8: {...four, ...spread, routeThreads: 64, routerUnroll: 8},
    // Fewer splits: fewer partials to sum, more row steps per router lane (unrolled: one latency for 8 of them).
    spread_hs16_ru8: {...tuned, ...spread, routerPartials: 2048, routerUnroll: 8},
    fourPrograms_spread_hs16_ru8: {...four, ...spread, routerPartials: 2048, routerUnroll: 8},
    fourPrograms_spread_hs8_ru16: {...four, ...spread, routerPartials: 1024, routerUnroll: 16},
    fourPrograms_route64: {...four, routeThreads: 64},
    ru8: {...tuned, routerUnroll: 8},
  };
  await warmGpu(apply, 800);
  const out: Record<string, unknown> = {};
  const thr: Record<string, number[]> = {}, whole: Record<string, number[]> = {};
  for (let r = 0; r < (QUICK ? 1 : 3); r++) {
    for (const [name, tiles] of Object.entries(variants)) {
      setWebGPUDecodeTiles(tiles);
      (thr[name] ??= []).push((await timeIt(apply, 100, 3)).throughputMs);
      (whole[name] ??= []).push(await wholeForwardMs(apply, 7));
    }
  }
  setWebGPUDecodeMaxTokens(0);
  const chain = apply(), want = await chain.data();
  chain.dispose();
  setWebGPUDecodeMaxTokens(32);
  for (const [name, tiles] of Object.entries(variants)) {
    setWebGPUDecodeTiles(tiles);
    const a = apply(), got = await a.data();
    a.dispose();
    out[name] = {wholeForwardMs: median(whole[name]), wholeForwardRounds: whole[name],
      perProgram: await perProgramMs(apply, 7), throughputMs: median(thr[name]), vsChainRelDiff: relMaxDiff(got, want)};
    say(`T=1 variant ${name}: ${JSON.stringify(out[name])}`);
  }
  // Marginal costs: 4 programs with the table's tiles, and with spread loads.
  const skips: Record<string, string[]> = {all: [], noRouterLogits: ['routerLogits'], noRoute: ['route'],
    onlyUpGate: ['routerLogits', 'route', 'down'], onlyDown: ['routerLogits', 'route', 'upGate'],
    onlyRoute: ['routerLogits', 'upGate', 'down'], onlyRouterLogits: ['route', 'upGate', 'down']};
  const marginal: Record<string, number> = {};
  for (const [label, tiles] of [['', four], ['spread_', {...four, ...spread}],
    ['spread_ru8_', {...four, ...spread, routerUnroll: 8}]] as const) {
    setWebGPUDecodeTiles(tiles);
    for (const [name, skip] of Object.entries(skips)) marginal[label + name] = await wholeForwardMs(apply, 9, skip);
  }
  setWebGPUDecodeTiles(null);
  out.marginalWholeForwardMs = marginal;
  out.emptyDispatchMs = await emptyDispatchMs();
  say(`T=1 marginal ${JSON.stringify(marginal)} empty ${JSON.stringify(out.emptyDispatchMs)}`);
  x.dispose();
  return out;
}

/** A Qwen3 layer whose experts are the given packed codes (its own GPU copy) and router `gate`. */
function packedQwenLayer(f: FormatRow, up: HostPacked, down: HostPacked, gate: Float32Array): FusedMoE {
  // Packed formats only here, so toQuantized gives QuantizedExpertWeights (a float32 row would be a tensor).
  const q = {up_gate_proj_weight: toQuantized(up) as QuantizedExpertWeights,
    down_proj_weight: toQuantized(down) as QuantizedExpertWeights};
  const layer = new FusedMoE({numExperts: E, topK: K, moeIntermediateSize: I, expertWeightFormat: f.format,
    quantGroupSize: f.format === 'int8' && f.groupSize == null ? null : f.groupSize ?? null,
    quantZeroPoint: f.zeroPoint ?? false, backend: 'webgpu'}).buildFor(H, q);
  tf.dispose([q.up_gate_proj_weight, q.down_proj_weight] as unknown as tf.TensorContainer);
  const g = tf.tensor2d(gate, [H, E]);
  layer.setNamedWeights({gate_weight: g});
  g.dispose();
  return layer;
}

function packedBytesPerExpert(p: HostPacked): number {
  return (p.values.length + (p.scales?.length ?? 0) + (p.zeroPoints?.length ?? 0)) * 4 / E;
}

/**
 * Launch candidates of the packed rows at T = 1 and 16, the table's first, the full set for the first format and
 * a short one for the others (BENCH_CANDIDATES: absent: session 4 batch J's; 'confirm': the table and the
 * session-3 table; 'batchI': batch I's; 'session3': batch F's sets).
 */
function packedCandidates(tuned: DecodeTilesOverride, T: number, format: string, first: boolean):
    Record<string, DecodeTilesOverride> {
  if (process.env.BENCH_CANDIDATES === 'session3') {
    return T === 1 ? {
      table: tuned, fourPrograms: {...tuned, fold: false}, bits: {...tuned, exponentBits: true},
      spread: {...tuned, routeLoads: 'spread'}, bits_spread: {...tuned, exponentBits: true, routeLoads: 'spread'},
      up8x32: {...tuned, upNv: 8, upKs: 32}, down2x128: {...tuned, downNv: 2, downKs: 128},
      down1x256: {...tuned, downNv: 1, downKs: 256}, bits_spread_ru8: {...tuned, exponentBits: true,
                                                                        routeLoads: 'spread', routerUnroll: 8},
      fourPrograms_bits_spread_route64: {...tuned, fold: false, exponentBits: true, routeLoads: 'spread', routeThreads: 64},
    } : {
      table: tuned, bits: {...tuned, exponentBits: true}, rows1: {...tuned, upRows: 1}, rows4: {...tuned, upRows: 4},
      bits_rows1: {...tuned, exponentBits: true, upRows: 1}, up32x8: {...tuned, upNv: 32, upKs: 8},
      down16x16: {...tuned, downNv: 16, downKs: 16}, down4x64: {...tuned, downNv: 4, downKs: 64},
      // The router at T = 16: 32 row steps per lane in a loop (a memory latency each), unrolled by 8.
      ru8: {...tuned, routerUnroll: 8}, bits_ru8: {...tuned, exponentBits: true, routerUnroll: 8},
      bits_rows1_ru8: {...tuned, exponentBits: true, upRows: 1, routerUnroll: 8},
    };
  }
  if (process.env.BENCH_CANDIDATES === 'batchI') return batchICandidates(tuned, T, format, first);
  if (process.env.BENCH_CANDIDATES === 's6') return session6Candidates(tuned, T, first);
  if (process.env.BENCH_CANDIDATES === 's6o') return session6Confirm(tuned, T, first);
  if (process.env.BENCH_CANDIDATES === 's7') return session7Candidates(tuned, T, format, first);
  if (process.env.BENCH_CANDIDATES === 's8') return session8Candidates(tuned, T, format, first);
  if (process.env.BENCH_CANDIDATES === 's9') return session9Candidates(tuned, T, format, first);
  if (process.env.BENCH_CANDIDATES === 'confirm') {
    // The final table against the session-3 table ('before'); for the first format at T = 16 also 2 packed steps /
    // items per loop iteration in upGate / down.
    const confirm: Record<string, DecodeTilesOverride> = {table: tuned, before: {...tuned, decodeOnce: false,
      e2m1Half: false, int4Half: false, ...(T === 16 && !format.endsWith('16') ? {upRows: 2, routerPartials: 16384} : {})}};
    // Session 5 (batch M): more router splits (a shorter router, more partials for the route to sum), the route's
    // loads spread.
    return first && T === 16 ? {...confirm, u2: {...tuned, upUnroll: 2}, d2: {...tuned, downUnroll: 2},
                                u2d2: {...tuned, upUnroll: 2, downUnroll: 2}, rp64k: {...tuned, routerPartials: 65536},
                                rp64k_sp: {...tuned, routerPartials: 65536, routeLoads: 'spread'},
                                sp: {...tuned, routeLoads: 'spread'}} : confirm;
  }
  // Session 4 batch J: the table (batch I's choices) against batch I's table (before) in the same run, int4 codes
  // as float16 patterns, the down program per expert (5 programs), the route's loads at once.
  const before: DecodeTilesOverride = {...tuned, decodeOnce: false, e2m1Half: false, int4Half: false,
    ...(T === 16 && !format.endsWith('16') ? {upRows: 2, routerPartials: 16384} : {})};
  const i4h: Record<string, DecodeTilesOverride> = format === 'int4' ? {i4h: {...tuned, int4Half: true}} : {};
  if (T === 1) return {table: tuned, before, ...i4h};
  const dbe = {...tuned, downByExpert: true};
  const short: Record<string, DecodeTilesOverride> = {table: tuned, before, dbe, ...i4h,
    ...(format === 'int4' ? {i4h_dbe: {...dbe, int4Half: true}} as Record<string, DecodeTilesOverride> : {})};
  if (!first) return short;
  return {...short, sp: {...tuned, routeLoads: 'spread'}, rp16k_sp: {...tuned, routerPartials: 16384, routeLoads: 'spread'},
    dbe2: {...dbe, downRows: 2}, dbe8: {...dbe, downRows: 8}, dbe_16x16: {...dbe, downNv: 16, downKs: 16},
    dbe_4x64: {...dbe, downNv: 4, downKs: 64}, i4h_dbe_sp: {...dbe, int4Half: true, routeLoads: 'spread'},
    i4h_rows4: {...tuned, int4Half: true, upRows: 4}, i4h_bits: {...tuned, int4Half: true, exponentBits: true}};
}

/**
 * Session 6: the route's top-k with candidates in registers ('keys'), its lane reductions by subgroup shuffles,
 * the mask placement, with more router splits; wider GEMM column tiles (more k-steps per lane) and the expert-major
 * down program with wide tiles (each expert's codes read once, not once per token).
 */
function session6Candidates(tuned: DecodeTilesOverride, T: number, first: boolean): Record<string, DecodeTilesOverride> {
  const route = {...tuned, routeTopk: 'keys', routeSubgroups: true, routePlace: 'mask'} as const;
  if (T === 1) {
    return {table: tuned, keys_mask: {...tuned, routeTopk: 'keys', routePlace: 'mask'},
            four_sg: {...route, fold: false}, four: {...tuned, fold: false}};
  }
  const base: Record<string, DecodeTilesOverride> = {table: tuned, ksm: route};
  if (!first) return base;
  return {...base, keys: {...tuned, routeTopk: 'keys'}, keys_sg: {...tuned, routeTopk: 'keys', routeSubgroups: true},
    mask: {...tuned, routePlace: 'mask'}, rounds_sg_mask: {...tuned, routeSubgroups: true, routePlace: 'mask'},
    ksm_rp64k: {...route, routerPartials: 65536}, ksm_rp64k_sp: {...route, routerPartials: 65536, routeLoads: 'spread'},
    ksm_up32x8: {...route, upNv: 32, upKs: 8}, ksm_up64x4: {...route, upNv: 64, upKs: 4},
    ksm_dbe64x4: {...route, downByExpert: true, downNv: 64, downKs: 4},
    ksm_dbe32x8: {...route, downByExpert: true, downNv: 32, downKs: 8},
    ksm_dbe64x4_r2: {...route, downByExpert: true, downNv: 64, downKs: 4, downRows: 2},
    ksm_down16x16: {...route, downNv: 16, downKs: 16}};
}

/**
 * Session 6 batch O: the table (batch N's route) against session 5's route; for the first format at T = 16 the
 * expert programs' cheaper variants on top of it (codes by exponent bits, two steps per loop, one row in registers,
 * more k-lanes, the down program unrolled or with more k-lanes).
 */
function session6Confirm(tuned: DecodeTilesOverride, T: number, first: boolean): Record<string, DecodeTilesOverride> {
  const s5 = {...tuned, routeTopk: 'rounds', routeSubgroups: false, routePlace: 'loop'} as const;
  if (T === 1) return {table: tuned, s5, four: {...tuned, fold: false}};
  if (!first) return {table: tuned, s5};
  return {table: tuned, s5, eb: {...tuned, exponentBits: true, int4Half: false}, u2: {...tuned, upUnroll: 2},
    rows1: {...tuned, upRows: 1}, up8x32: {...tuned, upNv: 8, upKs: 32}, d2: {...tuned, downUnroll: 2},
    down4x64: {...tuned, downNv: 4, downKs: 64}};
}

/**
 * Session 7: int4 codes as 1 + c / 16 with the zero point taken off each row's lhs sum once per step (halves or
 * float32 bits), each lane's next words loaded before the current step's arithmetic (prefetch, per program; every
 * packed format) and whole steps read without bounds checks (unchecked). BENCH_S7=a: batch 1's set.
 */
function session7Candidates(tuned: DecodeTilesOverride, T: number, format: string, first: boolean):
    Record<string, DecodeTilesOverride> {
  if (process.env.BENCH_S7 === 'a') {
    const pf = {...tuned, upPrefetch: true, downPrefetch: true};
    if (format !== 'int4') return {table: tuned, pf};
    const unit = {uh: {...tuned, int4Unit: 'half'}, ub: {...tuned, int4Unit: 'bits'}, pf,
                  uh_pf: {...pf, int4Unit: 'half'}, ub_pf: {...pf, int4Unit: 'bits'}} as const;
    if (T === 1 || !first) return {table: tuned, ...unit};
    return {table: tuned, ...unit, uh_pf_r4: {...pf, int4Unit: 'half', upRows: 4},
            uh_pf_up8x32: {...pf, int4Unit: 'half', upNv: 8, upKs: 32}};
  }
  // Batch 2: unchecked steps, the down program's prefetch alone, upGate's rows of x in workgroup memory (sx).
  const uc = {...tuned, unchecked: true};
  const dpf = {...tuned, downPrefetch: true};
  if (format !== 'int4') {
    return {table: tuned, dpf, uc, uc_dpf: {...uc, downPrefetch: true}, sx_uc_dpf: {...uc, downPrefetch: true, upStageX: true}};
  }
  const unit = {uh: {...tuned, int4Unit: 'half'}, uc, uh_uc: {...uc, int4Unit: 'half'}} as const;
  if (T === 1) return {table: tuned, ...unit, sx: {...tuned, upStageX: true}};
  if (!first) return {table: tuned, ...unit};
  return {table: tuned, ...unit, dpf, uh_uc_dpf: {...uc, int4Unit: 'half', downPrefetch: true},
          sx: {...tuned, upStageX: true}, uh_uc_sx: {...uc, int4Unit: 'half', upStageX: true},
          uc_sx: {...uc, upStageX: true}, uh_uc_sx_dpf: {...uc, int4Unit: 'half', upStageX: true, downPrefetch: true}};
}

/**
 * Session 8: session 7's best (int4 unit codes as halves, unchecked steps: 'uh_uc') against the table, with the
 * router's end reduction of 16 tokens per barrier pair (rr16) and, for the first format at T = 16, the expert
 * programs' options on top (float bits, prefetch, rows in registers, router splits, down tiles). BENCH_S8=b: batch
 * 2's confirmation set (the table against session 7's table, 'before').
 */
function session8Candidates(tuned: DecodeTilesOverride, T: number, format: string, first: boolean):
    Record<string, DecodeTilesOverride> {
  // Session 7's table (for BENCH_S8=b once the table has changed): no unit codes, checked steps, 1-token reductions.
  const before: DecodeTilesOverride = {...tuned, int4Unit: undefined, unchecked: false, routerReduceRows: 1,
                                       upInfoAtOnce: false, downTileMajor: false, upRowCases: false};
  if (process.env.BENCH_S8 === 'b') return {table: tuned, before};
  if (process.env.BENCH_S8 === 'c') return session8c(tuned, T, format);
  if (process.env.BENCH_S8 === 'd') {
    // Batch 2: the new table against session 7's; one stream loop per row count; the router in token groups.
    // (60 s of device time: the first format's T = 16 only has the two new options.)
    if (T === 1 || !first) return {table: tuned, before};
    return {table: tuned, before, loops: {...tuned, upRowLoops: true}, tg4: {...tuned, routerTokenGroups: 4}};
  }
  const uc = {...tuned, unchecked: true};
  const rr = {...uc, routerReduceRows: 16};
  if (format !== 'int4') {
    return T === 1 ? {table: tuned, uc} : {table: tuned, uc, rr16: {...tuned, routerReduceRows: 16}, uc_rr16: rr,
                                            uc_rr16_dtm: {...rr, downTileMajor: true},
                                            uc_rr16_do_rc: {...rr, decodeOnce: true, upRowCases: true}};
  }
  const uh = {...tuned, int4Unit: 'half'} as const;
  if (T === 1) {
    return {table: tuned, uh, uh_uc: {...uh, unchecked: true}, ub_uc: {...uc, int4Unit: 'bits'},
            uh_uc_io: {...uh, unchecked: true, upInfoAtOnce: true}};
  }
  const u = {...rr, int4Unit: 'half'} as const;
  const base: Record<string, DecodeTilesOverride> = {table: tuned, uh_uc: {...uh, unchecked: true}, uh_uc_rr16: u,
                                                     u_dtm: {...u, downTileMajor: true}, u_rc: {...u, upRowCases: true}};
  if (!first) return base;
  return {...base, rr16: {...tuned, routerReduceRows: 16}, ub_uc_rr16: {...rr, int4Unit: 'bits'},
          u_pf: {...u, upPrefetch: true}, u_dpf: {...u, downPrefetch: true}, u_rp64k: {...u, routerPartials: 65536},
          u_io: {...u, upInfoAtOnce: true}, u_r3_rc: {...u, upRows: 3, upRowCases: true},
          u_r4_rc: {...u, upRows: 4, upRowCases: true},
          u_io_dtm_rc: {...u, upInfoAtOnce: true, downTileMajor: true, upRowCases: true}};
}

/**
 * Session 9 (wgdec): the router's rows of x staged in workgroup memory (routerStageX) against the table, alone and
 * with the router's loads issued at once (routerUnroll), more splits (routerPartials 65536: 32), fewer (16384 / 8192
 * / 2048 with 2 / 4 / 16 token groups: 8 / 4 / 1 splits) and token groups; the route's loads spread. T = 1: table
 * and staged; the other formats at T = 16 also staged in 2 token groups and with 16 splits. BENCH_S9=b: the
 * confirmation set (the table against session 8's).
 */
function session9Candidates(tuned: DecodeTilesOverride, T: number, format: string, first: boolean):
    Record<string, DecodeTilesOverride> {
  if (process.env.BENCH_S9 === 'b') {
    // The confirmation set: the table against session 8's (its router: 64 workgroups for 4- and 8-bit codes, 8
    // splits for the halves, x not staged). T = 1 did not change.
    if (T === 1) return {table: tuned};
    const before = format.endsWith('16') ? {...tuned, routerPartials: 16384, routerStageX: false} :
        {...tuned, routerTokenGroups: 1, routerStageX: false};
    return {table: tuned, before};
  }
  const sx = {...tuned, routerStageX: true};
  if (T === 1) return {table: tuned, sx};
  // The halves' table has 8 splits (routerPartials 16384): 16 tokens' 256 rows do not fit staged (sx alone is the
  // table's code); in 2 token groups or 16 splits they do.
  if (!first) return {table: tuned, sx_tg2: {...sx, routerTokenGroups: 2}, sx_rp32k: {...sx, routerPartials: 32768}};
  return {table: tuned, sx, sx_ru4: {...sx, routerUnroll: 4}, sx_ru16: {...sx, routerUnroll: 16},
          sx_rp64k: {...sx, routerPartials: 65536}, sx_rp64k_ru8: {...sx, routerPartials: 65536, routerUnroll: 8},
          sx_tg2: {...sx, routerTokenGroups: 2}, sx_tg4: {...sx, routerTokenGroups: 4},
          sx_rp16k_tg2: {...sx, routerPartials: 16384, routerTokenGroups: 2},
          // Fewer partials for the route to sum: 4 splits of 512 rows in 4 token groups, 1 split in 16 (one token
          // per workgroup), the gate loads 8 / 16 row steps at once.
          sx_rp8k_tg4_ru8: {...sx, routerPartials: 8192, routerTokenGroups: 4, routerUnroll: 8},
          sx_rp2k_tg16_ru16: {...sx, routerPartials: 2048, routerTokenGroups: 16, routerUnroll: 16},
          sx_rp8k_tg4_ru8_sp: {...sx, routerPartials: 8192, routerTokenGroups: 4, routerUnroll: 8,
                               routeLoads: 'spread'},
          sx_rp2k_tg16_ru16_sp: {...sx, routerPartials: 2048, routerTokenGroups: 16, routerUnroll: 16,
                                 routeLoads: 'spread'},
          sx_sp: {...sx, routeLoads: 'spread'}};
}

/**
 * Session 8 batch 1b: the row cases (upRowCases, batch 1's winner) without the router's 16-token reduction, with
 * unit info at once, tile-major down, 3 and 4 rows; the other formats with row cases (decode once for the halves).
 */
function session8c(tuned: DecodeTilesOverride, T: number, format: string): Record<string, DecodeTilesOverride> {
  const rc = {...tuned, unchecked: true, upRowCases: true, decodeOnce: true};
  if (format === 'int4') {
    const u = {...rc, int4Unit: 'half'} as const;
    if (T === 1) return {table: tuned, uh_uc: {...tuned, int4Unit: 'half', unchecked: true}};
    return {table: tuned, u_rc: u, u_rc_rr16: {...u, routerReduceRows: 16}, u_rc_r3: {...u, upRows: 3},
            u_rc_r4: {...u, upRows: 4}, u_rc_io: {...u, upInfoAtOnce: true}, u_rc_dtm: {...u, downTileMajor: true},
            u_rc_io_dtm: {...u, upInfoAtOnce: true, downTileMajor: true}, uh_rc_checked: {...u, unchecked: false}};
  }
  return {table: tuned, uc_rc: rc, rc: {...rc, unchecked: false}, uc_rc_dtm: {...rc, downTileMajor: true}};
}

/** Batch I's candidates (session 4): decode-once rows, the router at T = 16, mxfp4's float16-pattern codes. */
function batchICandidates(tuned: DecodeTilesOverride, T: number, format: string, first: boolean):
    Record<string, DecodeTilesOverride> {
  const half = format === 'mxfp4' ? {...tuned, e2m1Half: true} : null;
  if (T === 1) {
    return {table: tuned, rv4: {...tuned, routerVec4: true}, ...(half == null ? {} : {half, half_rv4: {...half, routerVec4: true}})};
  }
  // T = 16: each quad of codes decoded once for all rows in registers (2-16 rows: fewer passes over the weights for
  // experts with more rows, more registers), the router reading x as vec4 and with more splits (it ran 32
  // workgroups at T = 16).
  const once = {...tuned, decodeOnce: true};
  const short: Record<string, DecodeTilesOverride> = {table: tuned, once2: {...once, upRows: 2},
    once4: {...once, upRows: 4}, once4_rv4_rp32k: {...once, upRows: 4, routerVec4: true, routerPartials: 32768},
    once4_dbe: {...once, upRows: 4, downByExpert: true},
    once4_dbe_rv4_rp32k: {...once, upRows: 4, downByExpert: true, routerVec4: true, routerPartials: 32768},
    once4_dbe_rv4_rp32k_sp: {...once, upRows: 4, downByExpert: true, routerVec4: true, routerPartials: 32768,
                             routeLoads: 'spread'},
    ...(half == null ? {} : {half, half_once4: {...once, upRows: 4, e2m1Half: true},
                             half_once4_dbe: {...once, upRows: 4, e2m1Half: true, downByExpert: true}})};
  if (!first) return short;
  return {...short, once8: {...once, upRows: 8}, once16: {...once, upRows: 16},
    once4_bits: {...once, upRows: 4, exponentBits: true},
    once4_up32x8: {...once, upRows: 4, upNv: 32, upKs: 8}, once4_up8x32: {...once, upRows: 4, upNv: 8, upKs: 32},
    rv4: {...tuned, routerVec4: true}, rp32k: {...tuned, routerPartials: 32768},
    rp64k: {...tuned, routerPartials: 65536}, rv4_rp32k: {...tuned, routerVec4: true, routerPartials: 32768},
    rv4_rp64k: {...tuned, routerVec4: true, routerPartials: 65536},
    // The route's partial loads all at once (T * E > its threads): 8 / 16 splits.
    sp: {...tuned, routeLoads: 'spread'}, rv4_rp32k_sp: {...tuned, routerVec4: true, routerPartials: 32768, routeLoads: 'spread'},
    once4_down4x64: {...once, upRows: 4, downNv: 4, downKs: 64},
    // The down program per expert (5 programs): rows in registers, column tiles.
    once4_dbe2: {...once, upRows: 4, downByExpert: true, downRows: 2},
    once4_dbe8: {...once, upRows: 4, downByExpert: true, downRows: 8},
    once4_dbe_16x16: {...once, upRows: 4, downByExpert: true, downNv: 16, downKs: 16},
    once4_dbe_4x64: {...once, upRows: 4, downByExpert: true, downNv: 4, downKs: 64}};
}

/** Issue 15 through the decode path: the listed formats at tokens, op chain vs decode, into out. */
async function packedRows(labels: string[], tokens: number[], out: Record<string, unknown>): Promise<void> {
  const gate = randArray(H * E, 0.05);
  for (const label of labels) {
    const f = FORMATS.find(v => v.label === label);
    if (f == null) throw new Error(`BENCH_PACKED: unknown format ${label}`);
    const t0 = performance.now();
    const up = randomPacked(f, H, 2 * I, 0.02), down = randomPacked(f, I, H, 0.02);
    const layer = packedQwenLayer(f, up, down, gate);
    const perExpert = packedBytesPerExpert(up) + packedBytesPerExpert(down);
    const rows: Array<Record<string, unknown>> = [];
    out[label] = {bytesPerExpert: perExpert, setupS: (performance.now() - t0) / 1e3, rows};
    const ort = ORT_FORMATS.includes(label) ? ortQMoeHooks({H, I, E, K}, process.env.BENCH_ORT_EP ?? 'webgpu', [label]) :
        null;
    let ortRun: Awaited<ReturnType<NonNullable<typeof ort>['prepare']>> = null;
    try {
      ortRun = ort == null ? null : await ort.prepare(f, gate, up, down);
    } catch (e) {
      (out[label] as Record<string, unknown>).ortError = (e as Error).message.slice(0, 400);
    }
    for (const T of tokens) {
      const xData = randArray(T * H, 1);
      const x = tf.tensor2d(xData, [T, H]);
      const apply = () => layer.apply(x) as tf.Tensor;
      const row: Record<string, unknown> = {T};
      const ids = tf.tidy(() => tf.topk(tf.matMul(x, layer.namedWeights().gate_weight as tf.Tensor2D), K).indices);
      const active = new Set(await ids.data()).size;
      ids.dispose();
      row.activeExperts = active;
      row.bytesFloorMs = 1e3 * (active * perExpert + 4 * H * E) / COPY_BYTES_PER_S;
      const n = QUICK ? 2 : 50;
      setWebGPUDecodeMaxTokens(0);
      await warmGpu(apply, 300);
      row.before = await timeIt(apply, n, 3);
      const b = apply(), want = await b.data();
      b.dispose();
      setWebGPUDecodeMaxTokens(32);
      const before = decodeDispatchCount();
      const a = apply(), got = await a.data();
      a.dispose();
      row.decodePrograms = decodeDispatchCount() - before;
      row.decodeVsChainRelDiff = relMaxDiff(got, want);
      // The host reference first: seconds of host work lower the GPU's clocks (batch I timed 1.27 ms after it).
      const ref = T === 1 || ortRun != null || (['s7', 's8', 's9'].includes(process.env.BENCH_CANDIDATES ?? '') && f.format === 'int4') ?
          referenceLayer(xData, T, gate, up, down) : null;
      if (ref != null) {
        row.relL2VsFloat64 = relL2(got, ref);
        row.chainRelL2VsFloat64 = relL2(want, ref);
      }
      await warmGpu(apply, 300);
      row.after = await timeIt(apply, n, 5);
      if (ortRun != null && ref != null) {
        // ORT's QMoE on the same codes, scales, router and x, in this process, between our timed rows.
        try {
          const o = await ortRun(xData, T);
          row.ort = {ms: o.ms, relL2VsFloat64: relL2(o.output, ref),
                     oursOverOrt: (row.after as Timing).throughputMs / o.ms,
                     ortOverOurs: o.ms / (row.after as Timing).throughputMs};
          await warmGpu(apply, 300);
          row.afterOrt = await timeIt(apply, n, 5);
        } catch (e) {
          row.ort = {error: (e as Error).message.slice(0, 400)};
        }
      }
      row.gpuWholeForwardMs = await wholeForwardMs(apply, 9);
      if (T === 1 || T === 16) row.gpuPerProgram = await perProgramMs(apply, 5);
      if ((T === 1 || T === 16) && PACKED.indexOf(label) < PACKED_SWEEP) {
        // Launch-shape candidates (throughput and whole-forward GPU time), the table's first.
        const tuned = tunedDecodeTiles({T, H, I, E, K, bits: f.format === 'float32' ? 32 : f.format === 'int8' ? 8 :
                                        f.format.endsWith('16') ? 16 : 4});
        const cands = packedCandidates(tuned, T, f.format, PACKED.indexOf(label) === 0);
        const sweep: Record<string, {thr: number, gpu: number, perProgram?: Record<string, number>, relDiff?: number,
                                     relL2VsFloat64?: number}> = {};
        const thr: Record<string, number[]> = {}, gpu: Record<string, number[]> = {};
        const perProgram: Record<string, Record<string, number>> = {}, diffs: Record<string, number> = {};
        const refErr: Record<string, number> = {};
        for (let r = 0; r < (QUICK ? 1 : 3); r++) {
          // Every other round in reverse order (the position bias).
          const order = r % 2 === 0 ? Object.entries(cands) : Object.entries(cands).reverse();
          for (const [name, tiles] of order) {
            setWebGPUDecodeTiles(tiles);
            if (r === 0) {
              // Each candidate's output against the table's (the op chain's above): a candidate that does not run
              // cannot pass as fast.
              const c = apply(), cg = await c.data();
              c.dispose();
              diffs[name] = relMaxDiff(cg, got);
              if (ref != null) refErr[name] = relL2(cg, ref);
            }
            (thr[name] ??= []).push((await timeIt(apply, 50, 2)).throughputMs);
            (gpu[name] ??= []).push(await wholeForwardMs(apply, 3));
            if (r === 1 && T === 16) perProgram[name] = await perProgramMs(apply, 3);
          }
        }
        for (const name of Object.keys(cands)) {
          sweep[name] = {thr: median(thr[name]), gpu: median(gpu[name]), perProgram: perProgram[name],
                         relDiff: diffs[name], relL2VsFloat64: refErr[name]};
        }
        setWebGPUDecodeTiles(null);
        row.tileSweep = sweep;
      }
      say(`packed ${label} T=${T} ${JSON.stringify(row)}`);
      rows.push(row);
      x.dispose();
      save();
    }
    layer.dispose();
    await ort?.release();
  }
}

/** The MoE part of the model at PACKED[0]'s format: n layers resident, decoded one token at a time. */
async function packedStack(n: number): Promise<Record<string, unknown>> {
  const f = FORMATS.find(v => v.label === PACKED[0])!;
  const t0 = performance.now();
  const up = randomPacked(f, H, 2 * I, 0.02), down = randomPacked(f, I, H, 0.02);
  const layers: FusedMoE[] = [];
  try {
    for (let l = 0; l < n; l++) layers.push(packedQwenLayer(f, up, down, randArray(H * E, 0.05)));
    const x0 = tf.randomNormal([1, H]).mul(0.5) as tf.Tensor2D;
    const step = (x: tf.Tensor) => tf.tidy(() => {
      let y = x;
      for (const layer of layers) y = layer.apply(y) as tf.Tensor;
      return y;
    });
    const stack: Record<string, unknown> = {format: f.label, layers: n, setupS: 0,
      floorMsPerToken: 1e3 * n * K * (packedBytesPerExpert(up) + packedBytesPerExpert(down)) / COPY_BYTES_PER_S};
    for (const [label, maxT] of [['after (decode path)', 32], ['before (op chain)', 0]] as const) {
      setWebGPUDecodeMaxTokens(maxT);
      for (let i = 0; i < 2; i++) { const y = step(x0); await y.data(); y.dispose(); }
      // Warm clocks: 20 tokens queued before timing.
      {
        let y: tf.Tensor = step(x0);
        for (let i = 0; i < (QUICK ? 1 : 20); i++) { const z = step(y); y.dispose(); y = z; }
        await y.data();
        y.dispose();
      }
      stack.setupS = (performance.now() - t0) / 1e3;
      const lat: number[] = [], enq: number[] = [];
      let x: tf.Tensor = x0.clone();
      for (let i = 0; i < (QUICK ? 2 : 20); i++) {
        const t1 = performance.now();
        const y = step(x);
        enq.push(performance.now() - t1);
        await y.data();
        lat.push(performance.now() - t1);
        x.dispose();
        x = y;
      }
      const t2 = performance.now();
      for (let i = 0; i < (QUICK ? 2 : 20); i++) { const y = step(x); x.dispose(); x = y; }
      await x.data();
      const pipelined = (performance.now() - t2) / (QUICK ? 2 : 20);
      x.dispose();
      stack[label] = {msPerToken: median(lat), tokensPerS: 1e3 / median(lat), enqueueMsPerToken: median(enq),
                      pipelinedMsPerToken: pipelined};
      say(`packed stack ${label}: ${JSON.stringify(stack[label])}`);
      setWebGPUDecodeMaxTokens(32);
      stack.programsPerToken = programsPerForward(() => step(x0));
    }
    x0.dispose();
    return stack;
  } catch (e) {
    return {error: (e as Error).message, layersBuilt: layers.length};
  } finally {
    for (const l of layers) l.dispose();
  }
}

async function main(): Promise<void> {
  mkdirSync(outDir, {recursive: true});
  results.adapter = await setupWebGPU();
  say(`adapter: ${JSON.stringify(results.adapter)}`);
  {
    const a = tf.ones([4]);
    const r = await timeIt(() => tf.add(a, a), 500, 3);
    results.dispatchOverheadUs = r.enqueueMs * 1e3;
    say(`tfjs dispatch overhead: ${(r.enqueueMs * 1e3).toFixed(1)} us per op`);
    a.dispose();
  }
  setWebGPUDecodeMaxTokens(32);
  results.referenceErrors = await checkAgainstReference();
  say(`decode vs float64 (small layers): ${JSON.stringify(results.referenceErrors)}`);
  save();

  const base = tf.tidy(() => ({gate: tf.randomNormal([H, E], 0, 0.05) as tf.Tensor2D,
    up: tf.randomNormal([1, H, 2 * I], 0, 0.02) as tf.Tensor3D,
    down: tf.randomNormal([1, I, H], 0, 0.02) as tf.Tensor3D}));
  const layer = qwenLayer(base, 0);
  const perExpertBytes = 4 * (H * 2 * I + I * H);
  {
    // V8 optimizes the decode path's JavaScript only after some hundred calls: run 2 timed its first rows on
    // unoptimized code (T = 1: 0.125 ms enqueue vs 0.051 at T = 2). Warm every entry first.
    setWebGPUDecodeMaxTokens(32);
    const x = tf.randomNormal([1, H]) as tf.Tensor2D;
    const {forward: layerForward} = selectMoeForward('webgpu');
    const w = layer.namedWeights();
    const t0 = performance.now();
    for (let i = 0; i < (QUICK ? 1 : 20); i++) {
      const outs: tf.Tensor[] = [];
      for (let j = 0; j < (QUICK ? 2 : 50); j++) {
        outs.push(layer.apply(x) as tf.Tensor, layer.call(x, {}),
                  tf.tidy(() => layerForward(x, w, layer.options, {owner: layer}) as tf.Tensor));
      }
      await outs[outs.length - 1].data();
      tf.dispose(outs);
    }
    results.warmupMs = performance.now() - t0;
    // T = 1 by entry, interleaved round by round (one measure per entry per round), medians over the rounds.
    const entries: Record<string, () => tf.Tensor> = {
      'layer.apply': () => layer.apply(x) as tf.Tensor,
      'layer.call (no tfjs-layers apply)': () => layer.call(x, {}),
      'forward (tidy, no layer)': () => tf.tidy(() => layerForward(x, w, layer.options, {owner: layer}) as tf.Tensor),
      'readback floor (tf.add [1,H] + data())': () => tf.add(x, x),
    };
    const rounds: Record<string, Timing[]> = {};
    for (let r = 0; r < (QUICK ? 1 : ENTRIES ? 7 : 0); r++) {
      for (const [name, fn] of Object.entries(entries)) (rounds[name] ??= []).push(await timeIt(fn, 100, 3));
    }
    const byEntry: Record<string, Timing> = {};
    for (const [name, ts] of Object.entries(rounds)) {
      byEntry[name] = {throughputMs: median(ts.map(t => t.throughputMs)), enqueueMs: median(ts.map(t => t.enqueueMs)),
                       latencyMs: median(ts.map(t => t.latencyMs))};
    }
    results.entriesT1 = byEntry;
    say(`T=1 by entry (warm, interleaved): ${JSON.stringify(byEntry)}`);
    x.dispose();
    save();
  }
  if (T1_VARIANTS) {
    results.t1Variants = await t1Variants(layer);
    save();
  }
  const rows: Array<Record<string, unknown>> = [];
  results.rows = rows;
  for (const T of [...TOKENS, ...LARGE_T]) {
    const x = tf.randomNormal([T, H]) as tf.Tensor2D;
    const apply = () => layer.apply(x) as tf.Tensor;
    const row: Record<string, unknown> = {T};
    // Active experts and the bytes floor.
    const ids = tf.tidy(() => tf.topk(tf.matMul(x, layer.namedWeights().gate_weight as tf.Tensor2D), K).indices);
    const active = new Set(await ids.data()).size;
    ids.dispose();
    row.activeExperts = active;
    row.bytesFloorMs = 1e3 * (active * perExpertBytes + 4 * H * E) / COPY_BYTES_PER_S;
    const n = T >= 4096 ? 10 : T >= 256 ? 20 : 100;
    const reps = T >= 4096 ? 3 : 7;
    setWebGPUDecodeMaxTokens(0);
    row.before = await timeIt(apply, n, reps);
    row.programsBefore = programsPerForward(apply);
    if (T <= 32) {
      setWebGPUDecodeMaxTokens(32);
      // Correctness on the real shape: the decode path against the chain on this GPU.
      const a = apply(), got = await a.data();
      setWebGPUDecodeMaxTokens(0);
      const b = apply(), want = await b.data();
      tf.dispose([a, b]);
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        maxRef = Math.max(maxRef, Math.abs(want[i]));
      }
      row.decodeVsChainRelDiff = maxDiff / maxRef;
      setWebGPUDecodeMaxTokens(32);
      // The previous default tiles and the tuned table's, interleaved.
      const run2: Timing[] = [], tuned: Timing[] = [];
      for (let r = 0; r < 3; r++) {
        setWebGPUDecodeTiles(RUN2_TILES(T));
        run2.push(await timeIt(apply, n, 5));
        setWebGPUDecodeTiles(null);
        tuned.push(await timeIt(apply, n, 5));
      }
      const med = (ts: Timing[]): Timing => ({throughputMs: median(ts.map(t => t.throughputMs)),
        enqueueMs: median(ts.map(t => t.enqueueMs)), latencyMs: median(ts.map(t => t.latencyMs))});
      row.afterRun2Tiles = med(run2);
      row.after = med(tuned);
      row.programsAfter = programsPerForward(apply);
    }
    say(`T=${T} ${JSON.stringify(row)}`);
    if (T === 1 || T === 2 || T === 16) {
      setWebGPUDecodeMaxTokens(0);
      const profile = await tf.time(() => { apply().dispose(); });
      row.gpuBefore = {kernelMs: profile.kernelMs,
        kernels: (profile as unknown as {getExtraProfileInfo?: () => string}).getExtraProfileInfo?.() ?? null};
      setWebGPUDecodeMaxTokens(32);
      const perProgramMs = async (): Promise<Record<string, number>> => {
        const perProgram: Record<string, number[]> = {};
        for (let r = 0; r < (QUICK ? 1 : 9); r++) {
          const times = await timeEncodedPrograms(() => { apply().dispose(); });
          for (const [name, ms] of times) (perProgram[name] ??= []).push(ms);
        }
        const gpu: Record<string, number> = {};
        for (const [name, ms] of Object.entries(perProgram)) gpu[name] = median(ms);
        gpu.sum = Object.values(gpu).reduce((s, v) => s + v, 0);
        return gpu;
      };
      setWebGPUDecodeTiles(RUN2_TILES(T));
      row.gpuAfterRun2Tiles = await perProgramMs();
      setWebGPUDecodeTiles(null);
      row.gpuAfter = await perProgramMs();
      // The whole forward in one timed pass (what the GPU spends on it back to back; per-program passes add gaps).
      const whole: number[] = [];
      for (let r = 0; r < (QUICK ? 1 : 9); r++) {
        whole.push((await timeEncodedPrograms(() => { apply().dispose(); }, 4, true))[0][1]);
      }
      row.gpuAfterWholeForwardMs = median(whole);
      // The folded variant (routing inside upGate, 3 programs) against the 4 programs on the table's tiles:
      // throughput interleaved, GPU time per program and of the whole forward in one pass (issue 14, batch D).
      if (T <= 2) {
        const byFold: Record<string, Record<string, unknown>> = {};
        const variants = {fourPrograms: false, folded: true};
        const thr: Record<string, Timing[]> = {};
        for (let r = 0; r < 3; r++) {
          for (const [name, fold] of Object.entries(variants)) {
            setWebGPUDecodeTiles({...tunedDecodeTiles({T, H, I, E, K}), fold});
            (thr[name] ??= []).push(await timeIt(apply, n, 5));
          }
        }
        for (const [name, fold] of Object.entries(variants)) {
          setWebGPUDecodeTiles({...tunedDecodeTiles({T, H, I, E, K}), fold});
          const wholeF: number[] = [];
          for (let r = 0; r < (QUICK ? 1 : 9); r++) {
            wholeF.push((await timeEncodedPrograms(() => { apply().dispose(); }, 4, true))[0][1]);
          }
          const a = apply(), got = await a.data();
          setWebGPUDecodeMaxTokens(0);
          const b = apply(), want = await b.data();
          setWebGPUDecodeMaxTokens(32);
          tf.dispose([a, b]);
          let maxDiff = 0, maxRef = 0;
          for (let i = 0; i < want.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
            maxRef = Math.max(maxRef, Math.abs(want[i]));
          }
          byFold[name] = {...(await perProgramMs()), wholeForward: median(wholeF), programs: programsPerForward(apply),
            throughputMs: median(thr[name].map(t => t.throughputMs)), vsChainRelDiff: maxDiff / maxRef};
        }
        setWebGPUDecodeTiles(null);
        row.gpuByFold = byFold;
        say(`T=${T} GPU by fold ${JSON.stringify(byFold)}`);
      }
      say(`T=${T} GPU before ${JSON.stringify(row.gpuBefore)} after (run 2 tiles) ${
          JSON.stringify(row.gpuAfterRun2Tiles)} after ${JSON.stringify(row.gpuAfter)} whole forward ${
          row.gpuAfterWholeForwardMs}`);
    }
    if (SWEEP_T.includes(T) && T <= 32 && (performance.now() - STARTED) / 1e3 < BUDGET_S / 2) {
      // Launch shapes of the decode programs, interleaved: every candidate once per round, medians of 3 rounds.
      // Fields a candidate leaves out take these values (not the table's), so that a key means the same in every run.
      const base = {upRows: 16, routerPartials: 16384, routeLanes: 256, routeTopk: 'rounds' as const};
      const tile = (up: string, down: string, extra: Partial<DecodeTilesOverride> = {}): DecodeTilesOverride => {
        const [upNv, upKs] = up.split('x').map(Number), [downNv, downKs] = down.split('x').map(Number);
        return {upNv, upKs, downNv, downKs, ...extra};
      };
      const candidates: DecodeTilesOverride[] = [
        tile('8x32', '4x64'), tile('16x16', '8x32'), tile('8x32', '2x128'), tile('16x16', '4x64'),
        tile('16x16', '2x128'), tile('32x8', '4x64'), tile('32x8', '8x32'), tile('32x8', '16x16'),
        tile('32x8', '2x128'), tile('4x64', '2x128'), tile('64x4', '4x64'),
        tile(T <= 2 ? '8x32' : '16x16', T <= 2 ? '2x128' : '8x32', {routeTopk: 'rank'}),
        tile(T <= 2 ? '8x32' : '16x16', T <= 2 ? '2x128' : '8x32', {routeLanes: 32}),
        ...(T >= 4 ? [tile('16x16', '8x32', {upRows: 2}), tile('16x16', '8x32', {upRows: 4}),
          tile('16x16', '8x32', {upRows: 8}), tile('16x16', '4x64', {upRows: 4}), tile('16x16', '16x16', {upRows: 4}),
          tile('32x8', '8x32', {upRows: 4}), tile('32x8', '16x16', {upRows: 4}), tile('8x32', '8x32', {upRows: 4})] : []),
        ...(T >= 8 ? [tile('16x16', '8x32', {upRows: 4, routerPartials: 65536}),
          tile('16x16', '8x32', {upRows: 4, routerPartials: 32768})] : []),
      ];
      const keyOf = (t: DecodeTilesOverride) =>
        `up${t.upNv}x${t.upKs}_down${t.downNv}x${t.downKs}${t.upRows != null ? `_rows${t.upRows}` : ''}` +
        `${t.routerPartials != null ? `_rp${t.routerPartials}` : ''}${t.routeLanes != null ? `_lanes${t.routeLanes}` : ''}` +
        `${t.routeTopk != null ? `_${t.routeTopk}` : ''}`;
      const tried: Record<string, number[]> = {};
      for (let r = 0; r < 3; r++) {
        for (const tiles of candidates) {
          setWebGPUDecodeTiles({...base, ...tiles});
          (tried[keyOf(tiles)] ??= []).push((await timeIt(apply, T >= 8 ? 30 : 50, 3)).throughputMs);
        }
      }
      setWebGPUDecodeTiles(null);
      const sweep = Object.fromEntries(Object.entries(tried).map(([k, v]) => [k, median(v)]));
      row.tileSweepThroughputMs = sweep;
      say(`T=${T} tiles ${JSON.stringify(sweep)}`);
    }
    x.dispose();
    rows.push(row);
    save();
  }
  // The JavaScript cost of the decode entry alone (no tfjs-layers apply()): the forward function the layer calls.
  {
    setWebGPUDecodeMaxTokens(32);
    const x = tf.randomNormal([1, H]) as tf.Tensor2D;
    const w = layer.namedWeights();
    const {forward: layerForward} = selectMoeForward('webgpu');
    const forward = () => tf.tidy(() => layerForward(x, w, layer.options, {owner: layer}) as tf.Tensor2D);
    results.rawForwardT1 = await timeIt(forward, 100, 7);
    say(`raw forward T=1 (decode): ${JSON.stringify(results.rawForwardT1)}`);
    x.dispose();
  }
  layer.dispose();
  save();
  if (PACKED.length > 0) {
    // The first format, its model-scale stack, then the others (in budget order).
    const packed: Record<string, unknown> = {};
    results.packed = packed;
    await packedRows(PACKED.slice(0, 1), PACKED_T, packed);
    save();
    if (PACKED_STACK > 0) {
      results.packedStack = await packedStack(PACKED_STACK);
      save();
    }
    await packedRows(PACKED.slice(1), PACKED_T_REST, packed);
    save();
  }

  if (STACK > 0) {
    const layers: FusedMoE[] = [];
    try {
      for (let l = 0; l < STACK; l++) layers.push(qwenLayer(base, l));
      const x0 = tf.randomNormal([1, H]).mul(0.5) as tf.Tensor2D;
      const step = (x: tf.Tensor) => tf.tidy(() => {
        let y = x;
        for (const layer of layers) y = layer.apply(y) as tf.Tensor;  // the MoE part only (no residual add)
        return y;
      });
      const stack: Record<string, unknown> = {layers: STACK};
      stack.tfjsSubmitBatch = tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE');
      const defaultSubmit = tf.env().getNumber('MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES');
      stack.defaultSubmitDispatches = defaultSubmit;
      // 'after, submit at N': MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES = N (a decode forward submits once the pass holds
      // N dispatches; 0 = tfjs's batch), to see whether the GPU starts on a token's first layers while JavaScript
      // enqueues the rest. 4 = every layer.
      const variants: Array<[string, number, number]> = [['before', 0, 0], ['after, tfjs batch', 32, 0],
        ['after, submit at 4', 32, 4], ['after, submit at 8', 32, 8], ['after, submit once', 32, 1e9]];
      for (const [label, maxT, submitAt] of variants) {
        setWebGPUDecodeMaxTokens(maxT);
        tf.env().set('MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES', submitAt);
        for (let i = 0; i < 2; i++) { const y = step(x0); await y.data(); y.dispose(); }
        // One token at a time, each token's output read before the next step (what sampling needs).
        const lat: number[] = [], enq: number[] = [];
        let x: tf.Tensor = x0.clone();
        for (let i = 0; i < (QUICK ? 2 : 20); i++) {
          const t0 = performance.now();
          const y = step(x);
          enq.push(performance.now() - t0);
          await y.data();
          lat.push(performance.now() - t0);
          x.dispose();
          x = y;
        }
        // Tokens queued without reading (the GPU-side rate with enqueue overlapped).
        const t0 = performance.now();
        for (let i = 0; i < (QUICK ? 2 : 20); i++) { const y = step(x); x.dispose(); x = y; }
        await x.data();
        const pipelined = (performance.now() - t0) / (QUICK ? 2 : 20);
        x.dispose();
        stack[label] = {msPerToken: median(lat), tokensPerS: 1e3 / median(lat), enqueueMsPerToken: median(enq),
                        pipelinedMsPerToken: pipelined, pipelinedTokensPerS: 1e3 / pipelined};
        say(`stack ${label}: ${JSON.stringify(stack[label])}`);
      }
      tf.env().set('MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES', defaultSubmit);
      setWebGPUDecodeMaxTokens(32);
      stack.programsPerToken = {after: programsPerForward(() => step(x0))};
      setWebGPUDecodeMaxTokens(0);
      (stack.programsPerToken as Record<string, number>).before = programsPerForward(() => step(x0));
      results.stack = stack;
      x0.dispose();
    } catch (e) {
      results.stack = {error: (e as Error).message, layersBuilt: layers.length};
      say(`stack failed: ${(e as Error).message}`);
    }
    for (const l of layers) l.dispose();
  }
  save();
}

main().then(() => process.exit(0), e => {
  console.error(e);
  log.push(`FAILED: ${(e as Error).stack}`);
  save();
  process.exit(1);
});
