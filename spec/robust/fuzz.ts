/**
 * Property-based fuzzing of every op and the FusedMoE layer against the float64 reference (issue 10): seeded
 * (one seed per path and case, printed on failure), a fixed case count per path, and a wall-clock guard that stops
 * a path early on a machine too slow for it (logged, never silently). Inputs cover the edges: T = 0, E = 1, k = E,
 * K = 0, D = 0, alignment > 1, empty segments, rows in no segment, exact ties, +-Inf / NaN / +-1e30 logits, NaN and
 * Inf in GEMM operands, +-100 SwiGLU gates.
 *
 * Routing inputs come from grids chosen so that float32 and float64 make the same choices: logits 0.3 + j/4 (no
 * two are negatives of each other, so no sigmoid pair sums to exactly 1 by symmetry), biases in steps of 0.5, and
 * specials whose softmax/sigmoid are exactly 0 or 1 in both precisions; equal values tie exactly in both.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, batchedGemmSwiglu, batchedGemmWeightGrad, FusedMoE, FusedMoEArgs, fusedSwigluScale, getMoeScores,
  moeCombine, moePermute, moeTopkSelect} from 'tfjs-moe';

import {randInt, rng} from '../helpers/util.js';
import {refBatchedGemm, refGetMoeScores, refMoeCombine, refMoePermute, refMoeTopkSelect, refOffsetsFromCounts,
  refSwigluScale} from '../reference/moe_reference.js';
import {randomLayer, referenceOutput} from '../layers/layer_util.js';
import type {EdgePath} from './paths.js';

export interface FuzzCounts {
  /** Random cases per op (8 ops). */
  perOp: number;
  /** Random FusedMoE configurations. */
  layers: number;
  /** Wall-clock guard for the whole path, ms. */
  budgetMs: number;
}

type Rand = () => number;
const pickOf = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)];
const SPECIAL_LOGITS = [NaN, Infinity, -Infinity, 1e30, -1e30];

function gridLogits(rand: Rand, n: number, specialRate: number): Float32Array {
  return Float32Array.from({length: n}, () =>
    rand() < specialRate ? pickOf(rand, SPECIAL_LOGITS) : 0.3 + randInt(rand, -12, 12) / 4);
}

function normals(rand: Rand, n: number, scale = 1): Float32Array {
  return Float32Array.from({length: n}, () => (rand() + rand() + rand() - 1.5) * 2 * scale);
}

/** NaN and Inf sprinkled into a copy (rate per element). */
function sprinkle(rand: Rand, values: Float32Array, rate: number): Float32Array {
  return values.map(v => rand() < rate ? pickOf(rand, [NaN, Infinity, -Infinity]) : v);
}

/** got == want elementwise: NaN where NaN, equal infinities, finite within tol of the largest finite |want|. */
function mismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): string | null {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    const ok = Number.isNaN(w) ? Number.isNaN(g) : !Number.isFinite(w) ? g === w : Math.abs(g - w) <= tol * scale;
    if (!ok) return `element ${i}: got ${g}, want ${w}`;
  }
  return null;
}

async function read(ts: tf.Tensor[]): Promise<Array<Float32Array | Int32Array>> {
  const out = await Promise.all(ts.map(t => t.data() as Promise<Float32Array | Int32Array>));
  tf.dispose(ts);
  return out;
}

type Check = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => void;

/** One op case: builds inputs from rand, runs on the path, checks against the reference; returns a label. */
type OpCase = (rand: Rand, path: EdgePath, check: Check) => Promise<string>;

const topkCase: OpCase = async (rand, path, check) => {
  const T = randInt(rand, 0, 6), E = randInt(rand, 1, 9), k = rand() < 0.3 ? E : randInt(rand, 1, E);
  const logits = gridLogits(rand, T * E, 0.08);
  const bias = rand() < 0.4 ? Float32Array.from({length: E}, () => randInt(rand, -2, 2) / 2) : null;
  const norm = rand() < 0.7;
  const lt = tf.tensor2d(logits, [T, E]), bt = bias == null ? null : tf.tensor1d(bias);
  const out = path.call(() => moeTopkSelect(lt as tf.Tensor2D, bt as tf.Tensor1D | null, k, norm));
  const [ids, weights] = await read([out.topkIds, out.topkWeights]);
  tf.dispose([lt, ...(bt ? [bt] : [])]);
  const ref = refMoeTopkSelect(logits, T, E, bias, k, norm);
  check('topkIds', ids, ref.ids, 0);
  check('topkWeights', weights, ref.weights, 1e-5);
  return `moeTopkSelect T=${T} E=${E} k=${k} bias=${bias != null} norm=${norm}`;
};

const scoresCase: OpCase = async (rand, path, check) => {
  const E = randInt(rand, 1, 12);
  const divisors = Array.from({length: E}, (_, i) => i + 1).filter(g => E % g === 0);
  const nGroup = pickOf(rand, divisors), topkGroup = randInt(rand, 1, nGroup);
  const k = randInt(rand, 1, Math.min(E, topkGroup * (E / nGroup)));
  const T = randInt(rand, 0, 5);
  const logits = gridLogits(rand, T * E, 0.08);
  const bias = rand() < 0.5 ? Float32Array.from({length: E}, () => randInt(rand, -2, 2) / 2) : null;
  const rsf = pickOf(rand, [1, 2.5]), renorm = rand() < 0.7;
  const lt = tf.tensor2d(logits, [T, E]), bt = bias == null ? null : tf.tensor1d(bias);
  const out = path.call(() => getMoeScores(lt as tf.Tensor2D, nGroup, topkGroup, k, rsf, bt as tf.Tensor1D | null, renorm));
  const [scores, weights, ids] = await read([out.scores, out.topkWeights, out.topkIds]);
  tf.dispose([lt, ...(bt ? [bt] : [])]);
  const ref = refGetMoeScores(logits, T, E, nGroup, topkGroup, k, rsf, bias, renorm);
  check('scores', scores, ref.scores, 1e-5);
  check('topkIds', ids, ref.ids, 0);
  check('topkWeights', weights, ref.weights, 1e-5);
  return `getMoeScores T=${T} E=${E} G=${nGroup} Gk=${topkGroup} k=${k} bias=${bias != null}`;
};

const permuteCase: OpCase = async (rand, path, check) => {
  const T = randInt(rand, 0, 6), E = randInt(rand, 1, 6), k = randInt(rand, 1, 3), D = randInt(rand, 0, 4);
  const alignment = pickOf(rand, [1, 1, 2, 4, 8]);
  const x = normals(rand, T * D);
  const ids = Int32Array.from({length: T * k}, () => randInt(rand, 0, E - 1));
  // Llama-4's weighted input (section 11.6): row rowMap[t,j] = x[t] * weights[t,j], one float32 product.
  const weights = rand() < 0.3 ? normals(rand, T * k) : null;
  const xt = tf.tensor2d(x, [T, D]), it = tf.tensor2d(ids, [T, k], 'int32');
  const wt = weights == null ? null : tf.tensor2d(weights, [T, k]);
  const out = path.call(() => moePermute(xt as tf.Tensor2D, it as tf.Tensor2D, E, alignment, {weights: wt as tf.Tensor2D | null}));
  const [px, tpe, offsets, rowMap] = await read([out.permutedX, out.tokensPerExpert, out.expertOffsets, out.rowMap]);
  tf.dispose([xt, it, ...(wt ? [wt] : [])]);
  const ref = refMoePermute(x, T, D, ids, k, E, alignment);
  if (weights != null) {
    for (let s = 0; s < T * k; s++) {
      const row = ref.rowMap[s], t = Math.floor(s / k);
      for (let d = 0; d < D; d++) ref.permutedX[row * D + d] = Math.fround(x[t * D + d] * weights[s]);
    }
  }
  check('permutedX', px, ref.permutedX, 0);
  check('tokensPerExpert', tpe, ref.tokensPerExpert, 0);
  check('expertOffsets', offsets, ref.expertOffsets, 0);
  check('rowMap', rowMap, ref.rowMap, 0);
  return `moePermute T=${T} E=${E} k=${k} D=${D} alignment=${alignment} weights=${weights != null}`;
};

/** Valid segments over R rows: counts (some empty), a possible gap before and rows after; as offsets or counts. */
function randomSegments(rand: Rand, E: number, R: number): {offsets: Int32Array, tensor: Int32Array} {
  const asCounts = rand() < 0.4;
  const start = asCounts ? 0 : randInt(rand, 0, Math.min(2, R));
  const counts = new Int32Array(E);
  let left = R - start;
  for (let e = 0; e < E; e++) {
    counts[e] = rand() < 0.2 ? 0 : randInt(rand, 0, left);
    left -= counts[e];
  }
  const offsets = refOffsetsFromCounts(counts).map(o => o + start);
  return {offsets, tensor: asCounts ? counts : offsets};
}

const gemmCase: OpCase = async (rand, path, check) => {
  const E = randInt(rand, 1, 4), K = pickOf(rand, [0, 1, 2, 3, 5]), N = randInt(rand, 1, 5), R = randInt(rand, 0, 12);
  const transposeRhs = rand() < 0.5, withBias = rand() < 0.4;
  const lhs = sprinkle(rand, normals(rand, R * K), 0.03), rhs = normals(rand, E * K * N, 0.5);
  const bias = withBias ? normals(rand, E * N, 0.2) : null;
  const segs = randomSegments(rand, E, R);
  const lt = tf.tensor2d(lhs, [R, K]), rt = tf.tensor3d(rhs, transposeRhs ? [E, N, K] : [E, K, N]);
  const st = tf.tensor1d(segs.tensor, 'int32'), bt = bias == null ? null : tf.tensor2d(bias, [E, N]);
  const out = path.call(() => batchedGemm(lt as tf.Tensor2D, rt as tf.Tensor3D, st as tf.Tensor1D, {transposeRhs, bias: bt as tf.Tensor2D | null}));
  const [got] = await read([out]);
  tf.dispose([lt, rt, st, ...(bt ? [bt] : [])]);
  check('out', got, refBatchedGemm(lhs, R, K, rhs, E, N, segs.offsets, transposeRhs, bias), 1e-4);
  return `batchedGemm E=${E} R=${R} K=${K} N=${N} transposeRhs=${transposeRhs} bias=${withBias}`;
};

const weightGradCase: OpCase = async (rand, path, check) => {
  const E = randInt(rand, 1, 4), K = randInt(rand, 0, 4), N = randInt(rand, 0, 4), R = randInt(rand, 0, 10);
  const transposeOut = rand() < 0.5;
  const lhs = sprinkle(rand, normals(rand, R * K), 0.03), dy = sprinkle(rand, normals(rand, R * N), 0.03);
  const segs = randomSegments(rand, E, R);
  const lt = tf.tensor2d(lhs, [R, K]), dt = tf.tensor2d(dy, [R, N]), st = tf.tensor1d(segs.tensor, 'int32');
  const out = path.call(() => batchedGemmWeightGrad(lt as tf.Tensor2D, dt as tf.Tensor2D, st as tf.Tensor1D, E, {transposeOut}));
  const [got] = await read([out]);
  tf.dispose([lt, dt, st]);
  const want = new Float64Array(E * K * N);
  for (let e = 0; e < E; e++) {
    for (let r = segs.offsets[e]; r < segs.offsets[e + 1]; r++) {
      for (let kk = 0; kk < K; kk++) {
        for (let nn = 0; nn < N; nn++) {
          want[transposeOut ? (e * N + nn) * K + kk : (e * K + kk) * N + nn] += lhs[r * K + kk] * dy[r * N + nn];
        }
      }
    }
  }
  check('out', got, want, 1e-4);
  return `batchedGemmWeightGrad E=${E} R=${R} K=${K} N=${N} transposeOut=${transposeOut}`;
};

/** Plain SwiGLU, or gpt-oss's clamped variant with its own or random constants (section 11.2). */
function randomActivation(rand: Rand): {activation: 'swiglu' | 'clamped_swiglu', swigluAlpha: number, swigluLimit: number} {
  if (rand() < 0.6) return {activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7};
  return {activation: 'clamped_swiglu', swigluAlpha: pickOf(rand, [1.702, 0.5]), swigluLimit: pickOf(rand, [7, 1.5])};
}

const swigluCase: OpCase = async (rand, path, check) => {
  const R = randInt(rand, 0, 8), I = randInt(rand, 0, 5);
  const x = Float32Array.from({length: R * 2 * I}, () => rand() < 0.1 ? pickOf(rand, [100, -100, 88, -90]) : normals(rand, 1, 2)[0]);
  const scale = rand() < 0.5 ? normals(rand, R) : null;
  const act = randomActivation(rand);
  const xt = tf.tensor2d(x, [R, 2 * I]), st = scale == null ? null : tf.tensor1d(scale);
  const out = path.call(() => fusedSwigluScale(xt as tf.Tensor2D, st as tf.Tensor1D | null, act));
  const [got] = await read([out]);
  tf.dispose([xt, ...(st ? [st] : [])]);
  check('out', got, refSwigluScale(x, R, I, scale, act), 1e-5);
  return `fusedSwigluScale R=${R} I=${I} scale=${scale != null} ${act.activation}`;
};

const gemmSwigluCase: OpCase = async (rand, path, check) => {
  const E = randInt(rand, 1, 4), K = pickOf(rand, [0, 1, 3, 4]), I = randInt(rand, 1, 4), R = randInt(rand, 0, 10);
  const N = 2 * I, transposeRhs = rand() < 0.4, withBias = rand() < 0.4;
  const lhs = sprinkle(rand, normals(rand, R * K), 0.03), rhs = normals(rand, E * K * N, 0.5);
  const bias = withBias ? normals(rand, E * N, 0.2) : null, scale = rand() < 0.5 ? normals(rand, R) : null;
  const act = randomActivation(rand);
  const segs = randomSegments(rand, E, R);
  // rhs is [E,K,N]; the transposed operand holds the same weights as [E,N,K].
  const rhsT = transposeRhs ? Float32Array.from({length: rhs.length}, (_, i) => {
    const e = Math.floor(i / (N * K)), n = Math.floor(i / K) % N, kk = i % K;
    return rhs[(e * K + kk) * N + n];
  }) : rhs;
  const lt = tf.tensor2d(lhs, [R, K]), rt = tf.tensor3d(rhsT, transposeRhs ? [E, N, K] : [E, K, N]);
  const st = tf.tensor1d(segs.tensor, 'int32'), bt = bias == null ? null : tf.tensor2d(bias, [E, N]);
  const sct = scale == null ? null : tf.tensor1d(scale);
  const out = path.call(() => batchedGemmSwiglu(lt as tf.Tensor2D, rt as tf.Tensor3D, st as tf.Tensor1D,
      {transposeRhs, bias: bt as tf.Tensor2D | null, scale: sct as tf.Tensor1D | null, ...act}));
  const [got] = await read([out]);
  tf.dispose([lt, rt, st, ...(bt ? [bt] : []), ...(sct ? [sct] : [])]);
  const h = refBatchedGemm(lhs, R, K, rhs, E, N, segs.offsets, false, bias);
  check('out', got, refSwigluScale(h, R, I, scale, act), 1e-4);
  return `batchedGemmSwiglu E=${E} R=${R} K=${K} I=${I} transposeRhs=${transposeRhs} bias=${withBias} ` +
      `scale=${scale != null} ${act.activation}`;
};

const combineCase: OpCase = async (rand, path, check) => {
  const T = randInt(rand, 0, 5), k = randInt(rand, 0, 3), D = randInt(rand, 1, 5), E = randInt(rand, 1, 4);
  const R = T * k + randInt(rand, 0, 3);
  const rows = Array.from({length: R}, (_, i) => i);
  for (let i = rows.length - 1; i > 0; i--) {
    const j = randInt(rand, 0, i);
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  const rowMap = Int32Array.from(rows.slice(0, T * k));
  const y = normals(rand, R * D), weights = normals(rand, T * k);
  const ids = Int32Array.from({length: T * k}, () => randInt(rand, 0, E - 1));
  const bias = rand() < 0.4 ? normals(rand, E * D, 0.3) : null;
  const weightsApplied = rand() < 0.3;
  const yt = tf.tensor2d(y, [R, D]), mt = tf.tensor2d(rowMap, [T, k], 'int32'), wt = tf.tensor2d(weights, [T, k]);
  const it = tf.tensor2d(ids, [T, k], 'int32'), bt = bias == null ? null : tf.tensor2d(bias, [E, D]);
  const out = path.call(() => moeCombine(yt as tf.Tensor2D, mt as tf.Tensor2D, wt as tf.Tensor2D, it as tf.Tensor2D,
      {downProjBias: bt as tf.Tensor2D | null, weightsApplied}));
  const [got] = await read([out]);
  tf.dispose([yt, mt, wt, it, ...(bt ? [bt] : [])]);
  check('out', got, refMoeCombine(y, R, D, rowMap, weights, ids, T, k, bias, weightsApplied), 1e-5);
  return `moeCombine T=${T} k=${k} R=${R} D=${D} bias=${bias != null} weightsApplied=${weightsApplied}`;
};

export const OP_CASES: Array<[string, OpCase]> = [
  ['moeTopkSelect', topkCase], ['getMoeScores', scoresCase], ['moePermute', permuteCase], ['batchedGemm', gemmCase],
  ['batchedGemmWeightGrad', weightGradCase], ['fusedSwigluScale', swigluCase], ['batchedGemmSwiglu', gemmSwigluCase],
  ['moeCombine', combineCase],
];

/**
 * A random FusedMoE configuration (every routing method but sparsemixer, every option of sections 7 and 11 the
 * float64 reference models), grid-valued router inputs so routing choices agree.
 */
async function layerCase(rand: Rand, path: EdgePath, check: Check): Promise<string> {
  const method = pickOf(rand, ['greedy', 'greedy', 'noaux_tc', 'noaux_tc', 'group_limited_greedy'] as const);
  const E = randInt(rand, 1, 6);
  // Identity experts (LongCat) with plain greedy routing and no latent space only: the router then scores E + Z.
  const zeroExperts = method === 'greedy' && rand() < 0.2 ? randInt(rand, 1, 2) : 0;
  const scored = E + zeroExperts;
  const divisors = Array.from({length: scored}, (_, i) => i + 1).filter(g => scored % g === 0);
  const grouped = method !== 'greedy';
  const nGroup = grouped ? pickOf(rand, divisors) : 1, topkGroup = grouped ? randInt(rand, 1, nGroup) : 1;
  const topK = randInt(rand, 1, method === 'noaux_tc' ? Math.min(scored, topkGroup * (scored / nGroup)) : scored);
  const shared = rand() < 0.3 ? randInt(rand, 1, 3) : 0;
  const withBias = rand() < 0.3;
  // Llama-4's weighted input has no meaning with expert biases (section 11.6).
  const routingWeightOn = pickOf(rand, withBias ? ['output', 'activation'] as const : ['output', 'activation', 'input'] as const);
  const act = randomActivation(rand);
  const args: FusedMoEArgs = {
    numExperts: E, topK, moeIntermediateSize: randInt(rand, 1, 4), topkMethod: method,
    nGroup, topkGroup, routedScalingFactor: pickOf(rand, [1, 1, 2.5]), renormalize: rand() < 0.7,
    renormalizeEpsilon: rand() < 0.2 ? 1e-6 : null, zeroExperts,
    useCorrectionBias: method !== 'group_limited_greedy' && rand() < 0.3, routerBias: rand() < 0.2,
    latentSize: zeroExperts === 0 && rand() < 0.2 ? randInt(rand, 1, 3) : null, withBias, routingWeightOn,
    activation: act.activation, swigluAlpha: act.swigluAlpha, swigluLimit: act.swigluLimit,
    sharedExpertIntermediateSize: shared, sharedExpertGate: shared > 0 && rand() < 0.5,
    backend: path.composite ? 'composite' : path.backend as 'cpu' | 'webgpu',
  };
  const H = randInt(rand, 1, 6), T = randInt(rand, 0, 5);
  const {layer, data} = randomLayer(args, H, rand);
  try {
    // Router weights and x on a grid of quarters: exact float32 logits, no float32-vs-float64 near-ties.
    const grid = (n: number) => Float32Array.from({length: n}, () => randInt(rand, -4, 4) / 4);
    data.gate_weight = grid(H * scored);
    const values: Record<string, tf.Tensor> = {gate_weight: tf.tensor2d(data.gate_weight, [H, scored])};
    for (const name of ['gate_correction_bias', 'gate_bias']) {
      if (data[name] == null) continue;
      data[name] = grid(scored);
      values[name] = tf.tensor1d(data[name]);
    }
    layer.setNamedWeights(values);
    tf.dispose(Object.values(values));
    const x = grid(T * H);
    const input = tf.tensor2d(x, [T, H]);
    const out = layer.apply(input) as tf.Tensor;
    const got = await out.data();
    tf.dispose([input, out]);
    check('layer output', got, referenceOutput(layer.options, data, x, T, H), 1e-4);
  } finally {
    layer.dispose();
  }
  const flags = ['renormalize', 'useCorrectionBias', 'routerBias', 'withBias', 'sharedExpertGate']
      .filter(f => (args as unknown as Record<string, unknown>)[f] === true).join(',');
  return `FusedMoE ${args.topkMethod} E=${E}+${zeroExperts} k=${topK} G=${nGroup}/${topkGroup} H=${H} T=${T} ` +
      `L=${args.latentSize} S=${shared} rsf=${args.routedScalingFactor} eps=${args.renormalizeEpsilon} ` +
      `weightOn=${routingWeightOn} ${act.activation} ${flags}`;
}

/** Seed of case i of `name` on a path: distinct per path so the paths see different cases. */
function seedOf(path: EdgePath, name: string, i: number): number {
  let h = 2166136261;
  for (const c of `${path.label}/${name}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return ((h >>> 0) + i * 7919) >>> 0;
}

/** Runs the fuzz cases of one path as one spec per op (so a failure names the op, the seed and the case). */
export function describeFuzz(path: EdgePath, counts: FuzzCounts): void {
  let started = 0;
  let ran = 0;
  beforeAll(() => {
    started = Date.now();
  });
  afterAll(() => {
    console.log(`fuzz [${path.label}]: ${ran} cases in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
  const suites: Array<[string, (rand: Rand, path: EdgePath, check: Check) => Promise<string>, number]> = [
    ...OP_CASES.map(([name, fn]) => [name, fn, counts.perOp] as [string, OpCase, number]),
    ['FusedMoE', layerCase, counts.layers],
  ];
  for (const [name, fn, n] of suites) {
    it(`${name}: ${n} random cases (seeded) match the float64 reference, no tensor leaked`, async () => {
      for (let i = 0; i < n; i++) {
        if (Date.now() - started > counts.budgetMs) {
          console.log(`fuzz [${path.label}] ${name}: time budget of ${counts.budgetMs} ms spent after ${i} of ${n} cases`);
          break;
        }
        const seed = seedOf(path, name, i);
        const before = tf.memory().numTensors;
        const failures: string[] = [];
        const check: Check = (what, got, want, tol) => {
          const m = mismatch(got, want, tol);
          if (m != null) failures.push(`${what}: ${m}`);
        };
        const label = await fn(rng(seed), path, check);
        expect(failures).withContext(`${path.label} seed=${seed} ${label}`).toEqual([]);
        expect(tf.memory().numTensors).withContext(`${path.label} seed=${seed} ${label}: tensors`).toBe(before);
        ran++;
        if (failures.length > 0) break;
      }
    });
  }
}
