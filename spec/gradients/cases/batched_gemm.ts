/** batchedGemm's gradients (lhs, rhs, bias) and the batchedGemmWeightGrad op they use, vs float64 references. */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, batchedGemmSwiglu, batchedGemmWeightGrad} from 'tfjs-moe';

import {refBatchedGemm, refOffsetsFromCounts, refSwigluScale} from '../../reference/moe_reference.js';
import {expectNoLeak, expectThrowsNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectShape, readF32, withInputs} from '../../ops/conformance/context.js';
import {checkGradients, dot} from '../grad_check.js';
import {GRAD_TOL} from './tolerances.js';

interface SegmentLayout {
  E: number;
  R: number;
  /** int32 [E+1] offsets or [E] counts, as passed to the op. */
  segments: Int32Array;
  offsets: Int32Array;
}

/** Random segments: empty experts, optional padding (alignment), unused rows past the last segment. */
function randomLayout(rand: () => number, maxE: number, maxRowsPerExpert: number): SegmentLayout {
  const E = randInt(rand, 1, maxE);
  const counts = new Int32Array(E);
  const emptyShare = rand() * 0.6;
  for (let e = 0; e < E; e++) counts[e] = rand() < emptyShare ? 0 : randInt(rand, 1, maxRowsPerExpert);
  const useCounts = rand() < 0.35;
  const alignment = useCounts ? 1 : [1, 1, 4][randInt(rand, 0, 2)];
  const offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + Math.ceil(counts[e] / alignment) * alignment;
  const R = offsets[E] + (rand() < 0.5 ? randInt(rand, 1, 4) : 0);
  return {E, R, segments: useCounts ? counts : offsets, offsets: useCounts ? refOffsetsFromCounts(counts) : offsets};
}

function layoutText(l: SegmentLayout): string {
  return `E=${l.E} R=${l.R} segments=${l.segments.length === l.E + 1 ? 'offsets' : 'counts'} [${l.segments}]`;
}

/** out[e] = sum over segment rows of lhs[r]^T dy[r], [E,K,N] (or [E,N,K]), float64. */
function refWeightGrad(lhs: ArrayLike<number>, dy: ArrayLike<number>, K: number, N: number, offsets: ArrayLike<number>,
    E: number, transposeOut: boolean): Float64Array {
  const out = new Float64Array(E * K * N);
  for (let e = 0; e < E; e++) {
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      for (let kk = 0; kk < K; kk++) {
        for (let n = 0; n < N; n++) {
          const at = transposeOut ? (e * N + n) * K + kk : (e * K + kk) * N + n;
          out[at] += lhs[r * K + kk] * dy[r * N + n];
        }
      }
    }
  }
  return out;
}

export function describeBatchedGemmGradients(ctx: ConformanceContext): void {
  describe('batchedGemm gradients', () => {
    const n = ctx.cases(16, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradBatchedGemm', i);
      const rand = rng(seed);
      const layout = randomLayout(rand, 4, 5);
      const K = randInt(rand, 1, 6), N = randInt(rand, 1, 6);
      const transposeRhs = rand() < 0.5;
      const withBias = rand() < 0.6;
      const {E, R, segments, offsets} = layout;
      const what = `seed=${seed} ${layoutText(layout)} K=${K} N=${N} transposeRhs=${transposeRhs} bias=${withBias}`;
      it(`lhs, rhs${withBias ? ', bias' : ''}: ${what}`, async () => {
        const cot = randn(rand, R * N);
        const rhsShape = transposeRhs ? [E, N, K] : [E, K, N];
        const inputs = [
          {name: 'lhs', values: randn(rand, R * K), shape: [R, K]},
          {name: 'rhs', values: randn(rand, E * K * N), shape: rhsShape},
        ];
        if (withBias) inputs.push({name: 'bias', values: randn(rand, E * N), shape: [E, N]});
        const segT = tf.tensor1d(segments, 'int32');
        const cotT = tf.tensor2d(cot, [R, N]);
        try {
          await checkGradients(ctx, {
            op: 'batchedGemm', what, inputs, h: 1e-3, tol: GRAD_TOL.gemm,
            loss: (lhs, rhs, bias) => tf.sum(tf.mul(batchedGemm(lhs as tf.Tensor2D, rhs as tf.Tensor3D, segT,
                {transposeRhs, bias: bias as tf.Tensor2D | undefined}), cotT)),
            referenceLoss: ([lhs, rhs, bias]) =>
                dot(cot, refBatchedGemm(lhs, R, K, rhs, E, N, offsets, transposeRhs, withBias ? bias : null)),
          });
        } finally {
          tf.dispose([segT, cotT]);
        }
      });
    }
  });

  describe('batchedGemmSwiglu gradients', () => {
    const n = ctx.cases(12, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradBatchedGemmSwiglu', i);
      const rand = rng(seed);
      // R >= 1: tfjs's webgpu reductions fail on empty inputs, which the composite path's autodiff would hit
      // (the forward's R = 0 cases are in the op conformance suite).
      let layout = randomLayout(rand, 4, 5);
      while (layout.R === 0) layout = randomLayout(rand, 4, 5);
      const K = randInt(rand, 1, 6), I = randInt(rand, 1, 4), N = 2 * I;
      const transposeRhs = rand() < 0.4;
      const withBias = rand() < 0.6, withScale = rand() < 0.6;
      // Every third case gpt-oss's clamped SwiGLU, with a limit inside the products' spread so that the clamps bind.
      const act = i % 3 === 2 ? {activation: 'clamped_swiglu' as const, swigluAlpha: 1.702, swigluLimit: 1.2} : {};
      const {E, R, segments, offsets} = layout;
      const what = `seed=${seed} ${layoutText(layout)} K=${K} I=${I} transposeRhs=${transposeRhs} bias=${withBias} ` +
          `scale=${withScale} ${JSON.stringify(act)}`;
      it(`lhs, rhs${withBias ? ', bias' : ''}${withScale ? ', scale' : ''}: ${what}`, async () => {
        const cot = randn(rand, R * I);
        const inputs = [
          {name: 'lhs', values: randn(rand, R * K), shape: [R, K]},
          {name: 'rhs', values: randn(rand, E * K * N), shape: transposeRhs ? [E, N, K] : [E, K, N]},
        ];
        if (withBias) inputs.push({name: 'bias', values: randn(rand, E * N), shape: [E, N]});
        if (withScale) inputs.push({name: 'scale', values: randn(rand, R), shape: [R]});
        const segT = tf.tensor1d(segments, 'int32');
        const cotT = tf.tensor2d(cot, [R, I]);
        try {
          await checkGradients(ctx, {
            op: 'batchedGemmSwiglu', what, inputs, h: 1e-3, tol: GRAD_TOL.gemm,
            loss: (lhs, rhs, ...rest) => {
              const bias = withBias ? rest[0] as tf.Tensor2D : null;
              const scale = withScale ? rest[rest.length - 1] as tf.Tensor1D : null;
              return tf.sum(tf.mul(batchedGemmSwiglu(lhs as tf.Tensor2D, rhs as tf.Tensor3D, segT,
                  {transposeRhs, bias, scale, ...act}), cotT));
            },
            referenceLoss: ([lhs, rhs, ...rest]) => {
              const bias = withBias ? rest[0] : null;
              const scale = withScale ? rest[rest.length - 1] : null;
              const h = refBatchedGemm(lhs, R, K, rhs, E, N, offsets, transposeRhs, bias);
              return dot(cot, refSwigluScale(h, R, I, scale, act));
            },
          });
        } finally {
          tf.dispose([segT, cotT]);
        }
      });
    }
  });

  describe('batchedGemmWeightGrad (op)', () => {
    const n = ctx.cases(30, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('batchedGemmWeightGrad', i);
      const rand = rng(seed);
      const layout = randomLayout(rand, 8, 9);
      const K = randInt(rand, 1, 24), N = randInt(rand, 1, 24);
      const transposeOut = rand() < 0.5;
      const {E, R, segments, offsets} = layout;
      it(`seed=${seed} ${layoutText(layout)} K=${K} N=${N} transposeOut=${transposeOut}`, async () => {
        const lhs = randn(rand, R * K), dy = randn(rand, R * N);
        await expectNoLeak(async () => {
          const lhsT = tf.tensor2d(lhs, [R, K]), dyT = tf.tensor2d(dy, [R, N]), segT = tf.tensor1d(segments, 'int32');
          const out = await withInputs([lhsT, dyT, segT], async () => {
            const outT = ctx.call(() => batchedGemmWeightGrad(lhsT, dyT, segT, E, {transposeOut}));
            expectShape(outT, transposeOut ? [E, N, K] : [E, K, N], 'batchedGemmWeightGrad output');
            return readF32(outT);
          });
          ctx.expectClose('batchedGemmWeightGrad', out, refWeightGrad(lhs, dy, K, N, offsets, E, transposeOut),
              GRAD_TOL.gemm, 'vs float64 reference');
        });
      });
    }

    it('R = 0 and every segment empty give zeros', async () => {
      await expectNoLeak(async () => {
        const lhsT = tf.zeros([0, 3]) as tf.Tensor2D, dyT = tf.zeros([0, 2]) as tf.Tensor2D;
        const segT = tf.tensor1d([0, 0, 0], 'int32');
        const out = await withInputs([lhsT, dyT, segT],
            () => readF32(ctx.call(() => batchedGemmWeightGrad(lhsT, dyT, segT, 2))));
        expect(Array.from(out)).toEqual(new Array(12).fill(0));
      });
    });

    it('rejects bad input naming the argument, before any work and without leaking', () => {
      const lhsT = tf.zeros([4, 3]) as tf.Tensor2D, dyT = tf.zeros([4, 2]) as tf.Tensor2D;
      const segT = tf.tensor1d([0, 2, 4], 'int32');
      const wrongRows = tf.zeros([5, 2]) as tf.Tensor2D;
      const floatSeg = tf.tensor1d([0, 2, 4]);
      try {
        const run = (f: () => unknown) => () => ctx.call(f);
        expectThrowsNoLeak(run(() => batchedGemmWeightGrad(lhsT, wrongRows, segT, 2)),
            /batchedGemmWeightGrad: argument 'dy' must be \[R,N\] with R = 4/);
        expectThrowsNoLeak(run(() => batchedGemmWeightGrad(lhsT, dyT, floatSeg as tf.Tensor1D, 2)),
            /argument 'segments' must be a int32 tensor/);
        expectThrowsNoLeak(run(() => batchedGemmWeightGrad(lhsT, dyT, segT, 5)),
            /argument 'segments' must be of length E\+1 = 6/);
        expectThrowsNoLeak(run(() => batchedGemmWeightGrad(lhsT, dyT, segT, 0)), /argument 'numExperts'/);
        expectThrowsNoLeak(run(() => batchedGemmWeightGrad(lhsT, dyT, segT, 2, {transposeOut: 1 as unknown as boolean})),
            /argument 'options.transposeOut' must be a boolean/);
      } finally {
        tf.dispose([lhsT, dyT, segT, wrongRows, floatSeg]);
      }
    });
  });
}
