/**
 * Runs one FusedMoE configuration on each path and measures it. Weights live in JS arrays and the layer is rebuilt
 * on each backend, because moving a webgpu tensor to another backend reads it synchronously, which headless
 * Chromium answers with zeros (shared/docs/tfjs-notes.md); every result is read with `await data()`.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs, MoeLayerBackend, routeTokens} from 'tfjs-moe';

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

export interface Workload {
  args: FusedMoEArgs;
  hidden: number;
  tokens: number;
  weights: Map<string, {shape: number[], values: Float32Array}>;
  x: Float32Array;
  bytes: number;
}

/** Random weights (uniform, scaled by fan-in so activations stay O(1)) and tokens for a configuration. */
export function makeWorkload(args: FusedMoEArgs, hidden: number, tokens: number, seed = 1): Workload {
  const rand = rng(seed);
  const weights = new Map<string, {shape: number[], values: Float32Array}>();
  let bytes = 0;
  // Shapes come from a throw-away layer on cpu, so this page never restates the layer's weight layout.
  const layer = new FusedMoE({...args, backend: 'composite', kernelInitializer: 'zeros'});
  layer.buildFor(hidden);
  for (const [name, t] of Object.entries(layer.namedWeights())) {
    if (t == null) continue;
    const shape = t.shape as number[];
    const fanIn = shape.length === 3 ? shape[1] : shape.length === 2 ? shape[0] : 1;
    const scale = name === 'gate_weight' ? 2 / Math.sqrt(fanIn) : name.endsWith('bias') ? 0.05 : 1 / Math.sqrt(fanIn);
    // Counted from the shape: a packed expert weight is not a tensor of that many values.
    const size = shape.reduce((a, b) => a * b, 1);
    weights.set(name, {shape, values: randomArray(rand, size, scale)});
    bytes += size * 4;
  }
  layer.dispose();
  return {args, hidden, tokens, weights, x: randomArray(rand, tokens * hidden, 1), bytes};
}

function buildLayer(w: Workload, layerBackend: MoeLayerBackend): FusedMoE {
  const layer = new FusedMoE({...w.args, backend: layerBackend, kernelInitializer: 'zeros'}).buildFor(w.hidden);
  const values: Record<string, tf.Tensor> = {};
  for (const [name, {shape, values: v}] of w.weights) values[name] = tf.tensor(v, shape);
  layer.setNamedWeights(values);
  tf.dispose(Object.values(values));
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
