/**
 * Runs one FusedMoE configuration on each path and measures it. Weights live in JS arrays and the layer is rebuilt
 * on each backend, because moving a webgpu tensor to another backend reads it synchronously, which headless
 * Chromium answers with zeros (shared/docs/tfjs-notes.md); every result is read with `await data()`.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs, MoeLayerBackend, QuantizedExpertWeights, routeTokens, weightSpecs} from 'tfjs-moe';

import {FormatRow, HostPacked, randomPackedWeights, toQuantized, xorshiftWords} from '../bench/random_packed.js';

export interface PathSpec {
  label: string;
  tfBackend: 'webgpu' | 'cpu';
  layerBackend: MoeLayerBackend;
}

export interface PathResult {
  label: string;
  /** What the layer reported it ran ('kernels:webgpu', 'composite:cpu', ...). */
  selected: string;
  medianMs: number;
  runs: number;
  output: Float32Array;
}

/** mulberry32, so that a configuration always gets the same weights and tokens. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(rand: () => number, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

/** The expert weight formats the page offers (docs/formats.md); the packed ones are drawn as random codes. */
export const DEMO_FORMATS: ReadonlyArray<FormatRow & {format: DemoFormat}> = [
  {label: 'float32', format: 'float32'},
  {label: 'float16', format: 'float16'},
  {label: 'int8 (per column)', format: 'int8'},
  {label: 'int4 (groups of 32)', format: 'int4', groupSize: 32},
];
export type DemoFormat = 'float32' | 'float16' | 'int8' | 'int4';

export interface Workload {
  args: FusedMoEArgs;
  hidden: number;
  tokens: number;
  format: DemoFormat;
  weights: Map<string, {shape: number[], values: Float32Array}>;
  /** The routed experts' weights of a packed format, as codes (and scales). */
  packed: Map<string, HostPacked>;
  x: Float32Array;
  /** Bytes of the layer's weights as stored (packed experts at their format's size). */
  bytes: number;
  /** Bytes the routed experts would take in float32 (what a composite path dequantizes per call). */
  expertFloatBytes: number;
}

/**
 * Random weights (uniform, scaled by fan-in so activations stay O(1)) and tokens for a configuration. Expert
 * weights of a packed format are drawn as codes directly (bench/random_packed.ts): a full-width layer never
 * exists in float32 here, and no quantizer runs.
 */
export function makeWorkload(args: FusedMoEArgs, hidden: number, tokens: number, seed = 1,
                             format: DemoFormat = 'float32'): Workload {
  const rand = rng(seed);
  const words = xorshiftWords(seed * 0x9e3779b9);
  const weights = new Map<string, {shape: number[], values: Float32Array}>();
  const packed = new Map<string, HostPacked>();
  const row = DEMO_FORMATS.find(f => f.format === format)!;
  let bytes = 0, expertFloatBytes = 0;
  // Shapes from the layer's own resolved options, so this page never restates the layer's weight layout (and
  // allocates nothing).
  const options = new FusedMoE({...args, ...layerFormatArgs(format)}).options;
  for (const {name, shape} of weightSpecs(options, hidden)) {
    const fanIn = shape.length === 3 ? shape[1] : shape.length === 2 ? shape[0] : 1;
    const scale = name === 'gate_weight' ? 2 / Math.sqrt(fanIn) : name.endsWith('bias') ? 0.05 : 1 / Math.sqrt(fanIn);
    const size = shape.reduce((a, b) => a * b, 1);
    if (name === 'up_gate_proj_weight' || name === 'down_proj_weight') {
      expertFloatBytes += size * 4;
      if (format !== 'float32') {
        const [E, K, N] = shape;
        const p = randomPackedWeights(row, E, K, N, scale, words);
        packed.set(name, p);
        bytes += p.values.byteLength + (p.scales?.byteLength ?? 0);
        continue;
      }
    }
    weights.set(name, {shape, values: randomArray(rand, size, scale)});
    bytes += size * 4;
  }
  return {args, hidden, tokens, format, weights, packed, x: randomArray(rand, tokens * hidden, 1), bytes,
    expertFloatBytes};
}

/** The layer arguments of an expert weight format. */
function layerFormatArgs(format: DemoFormat): Partial<FusedMoEArgs> {
  return {expertWeightFormat: format, quantGroupSize: DEMO_FORMATS.find(f => f.format === format)!.groupSize ?? null};
}

function buildLayer(w: Workload, layerBackend: MoeLayerBackend): FusedMoE {
  const layer = new FusedMoE({...w.args, ...layerFormatArgs(w.format), backend: layerBackend,
    kernelInitializer: 'zeros'}).buildFor(w.hidden);
  const values: Record<string, tf.Tensor | QuantizedExpertWeights> = {};
  const owned: tf.Tensor[] = [];
  for (const [name, {shape, values: v}] of w.weights) owned.push(values[name] = tf.tensor(v, shape));
  for (const [name, p] of w.packed) {
    const q = toQuantized(p) as QuantizedExpertWeights;
    values[name] = q;
    owned.push(...[q.values, q.scales, q.zeroPoints].filter((t): t is tf.Tensor => t != null));
  }
  layer.setNamedWeights(values);
  tf.dispose(owned);
  return layer;
}

/** Median latency of layer calls on one path: a warm-up call (shader compilation), then timed calls. */
export async function runPath(w: Workload, p: PathSpec, budgetMs = 1500, maxRuns = 7): Promise<PathResult> {
  if (!(await tf.setBackend(p.tfBackend))) throw new Error(`tfjs backend '${p.tfBackend}' failed to start`);
  const layer = buildLayer(w, p.layerBackend);
  const x = tf.tensor2d(w.x, [w.tokens, w.hidden]);
  try {
    const call = async () => {
      const y = layer.apply(x) as tf.Tensor;
      const data = await y.data() as Float32Array;
      y.dispose();
      return data;
    };
    const output = await call();
    const times: number[] = [];
    const start = performance.now();
    while (times.length < maxRuns && (times.length < 2 || performance.now() - start < budgetMs)) {
      const t0 = performance.now();
      await call();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const mid = times.length >> 1;
    const medianMs = times.length % 2 === 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
    return {label: p.label, selected: layer.selectedPath(), medianMs, runs: times.length,
      output};
  } finally {
    x.dispose();
    layer.dispose();
  }
}

export interface DecodeRunResult {
  selected: string;
  /** forward + `await data()` of each token, in order (after one untimed token that compiles the shaders). */
  perTokenMs: number[];
  medianMs: number;
}

/**
 * Decodes `steps` tokens one at a time (T = 1; each token's output is the next token's input, as a layer stack
 * decoding would feed it) and times each one with its read, which is what sampling the next token needs.
 */
export async function decodeRun(w: Workload, p: PathSpec, steps = 16): Promise<DecodeRunResult> {
  if (!(await tf.setBackend(p.tfBackend))) throw new Error(`tfjs backend '${p.tfBackend}' failed to start`);
  const layer = buildLayer(w, p.layerBackend);
  let x = tf.tensor2d(w.x.subarray(0, w.hidden), [1, w.hidden]);
  try {
    const perTokenMs: number[] = [];
    for (let i = 0; i <= steps; i++) {
      const t0 = performance.now();
      const y = layer.apply(x) as tf.Tensor2D;
      await y.data();
      if (i > 0) perTokenMs.push(performance.now() - t0);
      x.dispose();
      x = y;
    }
    const sorted = perTokenMs.slice().sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const medianMs = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    return {selected: layer.selectedPath(), perTokenMs, medianMs};
  } finally {
    x.dispose();
    layer.dispose();
  }
}

/** Tokens routed to each expert for the workload's batch, computed on the active backend. */
export async function expertLoad(w: Workload, layerBackend: MoeLayerBackend): Promise<Int32Array> {
  const layer = buildLayer(w, layerBackend);
  const x = tf.tensor2d(w.x, [w.tokens, w.hidden]);
  try {
    const {topkIds, topkWeights} = tf.tidy(() => routeTokens(x, layer.namedWeights(), layer.options));
    const ids = await topkIds.data();
    tf.dispose([topkIds, topkWeights]);
    const counts = new Int32Array(w.args.numExperts);
    for (const id of ids) counts[id]++;
    return counts;
  } finally {
    x.dispose();
    layer.dispose();
  }
}

/** max |a - b| / max |b|: the error measure the package's tests use, against the cpu path's output here. */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0, ref = 0;
  for (let i = 0; i < b.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return diff / Math.max(ref, 1e-30);
}
