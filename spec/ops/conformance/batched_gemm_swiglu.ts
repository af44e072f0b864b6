/**
 * batchedGemmSwiglu (docs/semantics.md section 5a) against the float64 reference: refSwigluScale(refBatchedGemm(...)),
 * on random segment layouts (empty experts, padding, rows in no segment), both rhs layouts, both segment forms,
 * with and without bias and row scale, and the edge cases of either op.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemmSwiglu, SwigluActivationOptions} from 'tfjs-moe';

import {refBatchedGemm, refOffsetsFromCounts, refSwigluScale} from '../../reference/moe_reference.js';
import {expectNoLeak, expectThrowsNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectShape, readF32, TOL, uniformF32, withInputs} from './context.js';

const OP = 'batchedGemmSwiglu';

interface SwigluGemmCase {
  lhs: Float32Array;
  R: number;
  K: number;
  rhs: Float32Array;
  E: number;
  I: number;
  segments: Int32Array;
  transposeRhs: boolean;
  bias: Float32Array | null;
  scale: Float32Array | null;
  act?: SwigluActivationOptions;
}

function describeCase(c: SwigluGemmCase): string {
  const form = c.segments.length === c.E + 1 ? 'offsets' : 'counts';
  return `R=${c.R} K=${c.K} I=${c.I} E=${c.E} segments=${form} transposeRhs=${c.transposeRhs} bias=${c.bias != null} ` +
      `scale=${c.scale != null}${c.act != null ? ` ${JSON.stringify(c.act)}` : ''}`;
}

async function runCase(ctx: ConformanceContext, c: SwigluGemmCase): Promise<void> {
  const {lhs, R, K, rhs, E, I, segments, transposeRhs, bias, scale, act = {}} = c;
  const N = 2 * I;
  await expectNoLeak(async () => {
    const lhsT = tf.tensor2d(lhs, [R, K]);
    const rhsT = tf.tensor3d(rhs, transposeRhs ? [E, N, K] : [E, K, N]);
    const segT = tf.tensor1d(segments, 'int32');
    const biasT = bias ? tf.tensor2d(bias, [E, N]) : null;
    const scaleT = scale ? tf.tensor1d(scale) : null;
    const {out} = await withInputs([lhsT, rhsT, segT, biasT, scaleT], async () => {
      const outT = ctx.call(() => batchedGemmSwiglu(lhsT, rhsT, segT, {transposeRhs, bias: biasT, scale: scaleT, ...act}));
      expectShape(outT, [R, I], 'batchedGemmSwiglu output');
      return {out: await readF32(outT)};
    });
    const offsets = segments.length === E + 1 ? segments : refOffsetsFromCounts(segments);
    const h = refBatchedGemm(lhs, R, K, rhs, E, N, offsets, transposeRhs, bias);
    // Rows in no segment are zero in h, and silu(0) * 0 * s = 0.
    ctx.expectClose(OP, out, refSwigluScale(h, R, I, scale, act), TOL.gemm, describeCase(c));
  });
}

function randomCase(seed: number, maxE: number, maxRowsPerExpert: number, maxDim: number): SwigluGemmCase {
  const rand = rng(seed);
  const E = randInt(rand, 1, maxE);
  const K = randInt(rand, 1, maxDim);
  // I % 4 == 0 often: the vec4 programs; otherwise the scalar ones.
  const I = rand() < 0.5 ? 4 * randInt(rand, 1, Math.max(1, maxDim >> 2)) : randInt(rand, 1, maxDim);
  const counts = new Int32Array(E);
  const emptyShare = rand();
  for (let e = 0; e < E; e++) counts[e] = rand() < emptyShare ? 0 : randInt(rand, 1, maxRowsPerExpert);
  const useCounts = rand() < 0.35;
  const alignment = useCounts ? 1 : [1, 1, 4][randInt(rand, 0, 2)];
  const offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + Math.ceil(counts[e] / alignment) * alignment;
  const R = offsets[E] + (rand() < 0.5 ? randInt(rand, 0, 5) : 0);
  return {
    lhs: randn(rand, R * K), R, K, rhs: randn(rand, E * K * 2 * I), E, I, segments: useCounts ? counts : offsets,
    transposeRhs: rand() < 0.3, bias: rand() < 0.5 ? randn(rand, E * 2 * I) : null,
    scale: rand() < 0.5 ? uniformF32(rand, R, -1, 1) : null,
  };
}

export function describeBatchedGemmSwigluConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(40, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = ctx.full ? randomCase(seed, 32, 12, 40) : randomCase(seed, 5, 5, 12);
      it(`random case seed=${seed} ${describeCase(c)}`, () => runCase(ctx, c));
    }

    // gpt-oss's clamped SwiGLU in the epilogue; limits inside the products' spread so that the clamps bind.
    const nc = ctx.cases(16, 3);
    for (let i = 0; i < nc; i++) {
      const seed = caseSeed(`${OP} clamped`, i);
      const c = ctx.full ? randomCase(seed, 32, 12, 40) : randomCase(seed, 5, 5, 12);
      const rand = rng(seed + 1);
      c.act = {activation: 'clamped_swiglu', swigluAlpha: 0.5 + 2 * rand(), swigluLimit: 0.3 + 3 * rand()};
      it(`clamped_swiglu random case seed=${seed} ${describeCase(c)}`, () => runCase(ctx, c));
    }

    it('rows before the first and after the last segment are zero, also with a bias and a scale', async () => {
      const rand = rng(41);
      const E = 3, K = 4, I = 4, R = 10;
      const segments = Int32Array.from([2, 4, 4, 7]);
      for (const transposeRhs of [false, true]) {
        await runCase(ctx, {lhs: randn(rand, R * K), R, K, rhs: randn(rand, E * K * 2 * I), E, I, segments, transposeRhs,
          bias: randn(rand, E * 2 * I), scale: uniformF32(rand, R, -1, 1)});
      }
    });

    it('K = 0: each segment row is swiglu(bias) * scale; R = 0 is empty', async () => {
      const rand = rng(42);
      await runCase(ctx, {lhs: new Float32Array(0), R: 4, K: 0, rhs: new Float32Array(0), E: 2, I: 3,
        segments: Int32Array.from([0, 2, 3]), transposeRhs: false, bias: randn(rand, 12), scale: uniformF32(rand, 4, -1, 1)});
      await runCase(ctx, {lhs: new Float32Array(0), R: 0, K: 3, rhs: randn(rand, 2 * 3 * 8), E: 2, I: 4,
        segments: Int32Array.from([0, 0, 0]), transposeRhs: false, bias: null, scale: null});
    });

    it('rejects an odd output width and a scale of the wrong length, naming the argument', () => {
      const lhs = tf.zeros([3, 2]) as tf.Tensor2D, seg = tf.tensor1d([0, 3], 'int32');
      const odd = tf.zeros([1, 2, 5]) as tf.Tensor3D, even = tf.zeros([1, 2, 4]) as tf.Tensor3D;
      const scale = tf.zeros([2]) as tf.Tensor1D;
      try {
        expectThrowsNoLeak(() => batchedGemmSwiglu(lhs, odd, seg), /batchedGemmSwiglu: argument 'rhs' must be .*even/);
        expectThrowsNoLeak(() => batchedGemmSwiglu(lhs, even, seg, {scale}),
                           /batchedGemmSwiglu: argument 'options.scale' must be of shape \[R\] = \[3\]/);
        expectThrowsNoLeak(() => batchedGemmSwiglu(lhs, even, seg, {activation: 'gelu' as never}),
                           /batchedGemmSwiglu: argument 'options.activation' must be 'swiglu' or 'clamped_swiglu'/);
        expectThrowsNoLeak(() => batchedGemmSwiglu(lhs, even, seg, {activation: 'clamped_swiglu', swigluLimit: -1}),
                           /batchedGemmSwiglu: argument 'options.swigluLimit' must be a finite number > 0/);
        expectThrowsNoLeak(() => batchedGemmSwiglu(lhs, even, seg, {swigluAlpha: NaN}),
                           /batchedGemmSwiglu: argument 'options.swigluAlpha' must be a finite number/);
      } finally {
        tf.dispose([lhs, seg, odd, even, scale]);
      }
    });
  });
}
