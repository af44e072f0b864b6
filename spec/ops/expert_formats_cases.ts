/**
 * Random cases for the quantized GEMM and dequantization specs, shared by the cpu/composite and webgpu suites:
 * each case quantizes random weights, and its expected result is the float64 reference GEMM evaluated on
 * dequantizeExpertWeights(q), itself checked bit for bit against the independent decoder of docs/formats.md.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {randInt, randn, readAll, recordError, relError} from '../helpers/util.js';
import {refDequantize, RefPacked} from '../reference/expert_formats_reference.js';
import {refBatchedGemm, refOffsetsFromCounts, refSwigluScale} from '../reference/moe_reference.js';

export const GEMM_TOL = 1e-5;

export interface FormatVariant {
  label: string;
  format: moe.ExpertWeightFormat;
  groupSize?: number;
  zeroPoint?: boolean;
}

export const VARIANTS: FormatVariant[] = [
  {label: 'float32', format: 'float32'},
  {label: 'float16', format: 'float16'},
  {label: 'bfloat16', format: 'bfloat16'},
  {label: 'int8', format: 'int8'},
  {label: 'int8 g32', format: 'int8', groupSize: 32},
  {label: 'int4 g32', format: 'int4', groupSize: 32},
  {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
  {label: 'int4 g128', format: 'int4', groupSize: 128},
  {label: 'mxfp4', format: 'mxfp4'},
];

export function options(v: FormatVariant, transposed: boolean): moe.QuantizeExpertWeightsOptions {
  const o: moe.QuantizeExpertWeightsOptions = {transposed};
  if (v.groupSize != null) o.groupSize = v.groupSize;
  if (v.zeroPoint != null) o.zeroPoint = v.zeroPoint;
  return o;
}

/** q's host arrays in the reference decoder's form (async reads: works on webgpu too). */
export async function refPacked(q: moe.QuantizedExpertWeights): Promise<RefPacked> {
  return {
    format: q.format, shape: q.shape, transposed: q.transposed, groupSize: q.groupSize, zeroPoint: q.zeroPoint,
    values: await q.values.data(),
    scales: q.scales ? await q.scales.data() : undefined,
    zeroPoints: q.zeroPoints ? await q.zeroPoints.data() : undefined,
  };
}

/** Bit equality of float arrays (NaN equal to NaN, -0 distinct from 0). */
export function firstBitMismatch(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

export interface CaseOptions {
  /** Fixed dimensions instead of random ones. */
  fixed?: {K: number, N: number, counts: number[]};
  /** The fused up-projection + SwiGLU (N even, a row scale half the time). */
  swiglu?: boolean;
  /** K a positive multiple of this (up to maxDims.K): the wasm kernels' whole groups. */
  kMultiple?: number;
}

export interface GemmCase {
  ctx: string;
  run: () => tf.Tensor2D;
  expected: Float64Array;
  /** The packed rhs. */
  q: moe.QuantizedExpertWeights;
  dispose: () => void;
}

/**
 * One random case: shapes from `maxDims`, K often not a multiple of the group, random empty experts, rows past
 * the last segment, offsets or counts, bias half the time, both orientations.
 */
export async function makeGemmCase(
    rand: () => number, v: FormatVariant, maxDims: {E: number, K: number, N: number, rows: number}, seed: number,
    trial: number, extra: CaseOptions = {}): Promise<GemmCase> {
  const {fixed, swiglu = false, kMultiple} = extra;
  // The first two trials always multiply something (E, K and one segment non-empty); later ones may be empty.
  const some = trial < 2 ? 1 : 0;
  const E = fixed ? fixed.counts.length : randInt(rand, some, maxDims.E);
  const K = fixed ? fixed.K : kMultiple != null ? kMultiple * randInt(rand, 1, Math.max(1, Math.floor(maxDims.K / kMultiple))) :
      randInt(rand, some, maxDims.K);
  const N = fixed ? fixed.N : swiglu ? 2 * randInt(rand, 1, Math.max(1, maxDims.N >> 1)) : randInt(rand, 1, maxDims.N);
  const transposed = trial % 2 === 1, withBias = rand() < 0.5, asOffsets = rand() < 0.5;
  const counts = fixed ? fixed.counts :
      Array.from({length: E}, (_, e) => (rand() < 0.25 && !(some && e === 0) ? 0 : randInt(rand, 1, maxDims.rows)));
  const used = counts.reduce((a, b) => a + b, 0);
  const R = used + (asOffsets ? randInt(rand, 0, 2) : 0);
  const withScale = swiglu && rand() < 0.5;
  const ctx = `seed ${seed} trial ${trial} ${v.label}${swiglu ? ` swiglu scale=${withScale}` : ''} ` +
      `E=${E} K=${K} N=${N} R=${R} transposed=${transposed} ` +
      `bias=${withBias} offsets=${asOffsets} counts=[${counts}]`;
  const w = randn(rand, E * K * N, 0.5);
  const shape = transposed ? [E, N, K] : [E, K, N];
  const q = moe.quantizeExpertWeightsFromArray(w, shape, v.format, options(v, transposed));
  const deq = moe.dequantizeExpertWeights(q);
  const [deqData] = await readAll(deq);
  const ref = refDequantize(await refPacked(q));
  const mismatch = firstBitMismatch(deqData, Float32Array.from(ref));
  expect(mismatch).withContext(`${ctx}: dequantizeExpertWeights vs the reference decoder, first differing index`)
      .toBe(-1);
  const lhsData = randn(rand, R * K);
  const biasData = withBias ? randn(rand, E * N, 0.3) : null;
  const offsets = refOffsetsFromCounts(counts);
  const lhs = tf.tensor2d(lhsData, [R, K]);
  const segments = tf.tensor1d(asOffsets ? offsets : Int32Array.from(counts), 'int32');
  const bias = biasData ? tf.tensor2d(biasData, [E, N]) : null;
  const scaleData = withScale ? randn(rand, R) : null;
  const scale = scaleData ? tf.tensor1d(scaleData) : null;
  const product = refBatchedGemm(lhsData, R, K, ref, E, N, offsets, transposed, biasData);
  const expected = swiglu ? refSwigluScale(product, R, N / 2, scaleData) : product;
  return {
    ctx, expected, q,
    run: () => swiglu ? moe.batchedGemmSwiglu(lhs, q, segments, {transposeRhs: transposed, bias, scale}) :
        moe.batchedGemm(lhs, q, segments, {transposeRhs: transposed, bias}),
    dispose: () => tf.dispose([lhs, segments, bias, scale, q] as tf.TensorContainer),
  };
}

/** Runs `trials` random cases of every variant and compares with the reference. */
export async function checkGemmCases(
    label: string, seed: number, trials: number, maxDims: {E: number, K: number, N: number, rows: number},
    run: (c: GemmCase) => tf.Tensor2D, rand: () => number, extra: CaseOptions = {},
    variants: readonly FormatVariant[] = VARIANTS): Promise<void> {
  for (const v of variants) {
    for (let trial = 0; trial < trials; trial++) {
      const before = tf.memory().numTensors;
      const c = await makeGemmCase(rand, v, maxDims, seed, trial, extra);
      const out = run(c);
      const [got] = await readAll(out);
      c.dispose();
      expect(tf.memory().numTensors).withContext(`${c.ctx}: tensors after the case`).toBe(before);
      const err = relError(got, c.expected);
      recordError(`${label} ${extra.swiglu ? 'batchedGemmSwiglu' : 'batchedGemm'} ${v.label}`, err);
      expect(err).withContext(c.ctx).toBeLessThan(GEMM_TOL);
    }
  }
}
