/** batchedGemm (docs/semantics.md section 4) against the float64 reference. */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm} from 'tfjs-moe';

import {refBatchedGemm, refOffsetsFromCounts} from '../../reference/moe_reference.js';
import {expectNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectShape, readF32, TOL, withInputs} from './context.js';

const OP = 'batchedGemm';

interface GemmCase {
  lhs: Float32Array;
  R: number;
  K: number;
  rhs: Float32Array;
  E: number;
  N: number;
  /** int32 [E+1] offsets or [E] counts, exactly as passed to the op. */
  segments: Int32Array;
  transposeRhs: boolean;
  bias: Float32Array | null;
}

function describeCase(c: GemmCase): string {
  const form = c.segments.length === c.E + 1 ? 'offsets' : 'counts';
  return `R=${c.R} K=${c.K} N=${c.N} E=${c.E} segments=${form} transposeRhs=${c.transposeRhs} bias=${c.bias != null}`;
}

async function runGemmCase(ctx: ConformanceContext, c: GemmCase): Promise<void> {
  const {lhs, R, K, rhs, E, N, segments, transposeRhs, bias} = c;
  await expectNoLeak(async () => {
    const lhsT = tf.tensor2d(lhs, [R, K]);
    const rhsT = tf.tensor3d(rhs, transposeRhs ? [E, N, K] : [E, K, N]);
    const segT = tf.tensor1d(segments, 'int32');
    const biasT = bias ? tf.tensor2d(bias, [E, N]) : null;
    const {out} = await withInputs([lhsT, rhsT, segT, biasT], async () => {
      const outT = ctx.call(() => batchedGemm(lhsT, rhsT, segT, {transposeRhs, bias: biasT}));
      expectShape(outT, [R, N], 'batchedGemm output');
      const out = await readF32(outT);
      return {out};
    });

    const offsets = segments.length === E + 1 ? segments : refOffsetsFromCounts(segments);
    const ref = refBatchedGemm(lhs, R, K, rhs, E, N, offsets, transposeRhs, bias);
    ctx.expectClose(OP, out, ref, TOL.gemm, describeCase(c));
  });
}

/**
 * Random segment layout: many empty experts, optional per-segment padding (as moePermute's alignment makes),
 * unused rows after the last segment. Counts form only without padding (counts are packed from row 0).
 */
function randomGemmCase(seed: number, maxE: number, maxRowsPerExpert: number, maxDim: number): GemmCase {
  const rand = rng(seed);
  const E = randInt(rand, 1, maxE);
  const K = randInt(rand, 1, maxDim);
  const N = randInt(rand, 1, maxDim);
  const counts = new Int32Array(E);
  const emptyShare = rand();
  for (let e = 0; e < E; e++) counts[e] = rand() < emptyShare ? 0 : randInt(rand, 1, maxRowsPerExpert);
  const useCounts = rand() < 0.35;
  const alignment = useCounts ? 1 : [1, 1, 4, 8][randInt(rand, 0, 3)];
  const offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + Math.ceil(counts[e] / alignment) * alignment;
  const R = offsets[E] + (rand() < 0.5 ? randInt(rand, 0, 6) : 0);
  const transposeRhs = rand() < 0.5;
  return {
    lhs: randn(rand, R * K), R, K, rhs: randn(rand, E * K * N), E, N, segments: useCounts ? counts : offsets,
    transposeRhs, bias: rand() < 0.5 ? randn(rand, E * N) : null,
  };
}

export function describeBatchedGemmConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(80, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = ctx.full ? randomGemmCase(seed, 64, 12, 48) : randomGemmCase(seed, 6, 5, 12);
      it(`random case seed=${seed} ${describeCase(c)}`, () => runGemmCase(ctx, c));
    }

    it('rows after the last segment are zero, also with a bias; empty segments write nothing', async () => {
      const rand = rng(31);
      const E = 4, K = 5, N = 3, R = 9;
      // Experts 0 and 2 empty; rows 6..8 in no segment.
      const segments = Int32Array.from([0, 0, 4, 4, 6]);
      for (const transposeRhs of [false, true]) {
        await runGemmCase(ctx, {lhs: randn(rand, R * K), R, K, rhs: randn(rand, E * K * N), E, N, segments, transposeRhs,
          bias: randn(rand, E * N)});
      }
    });

    it('rows before the first offset are in no segment and are zero', async () => {
      const rand = rng(32);
      const E = 2, K = 3, N = 2, R = 6;
      await runGemmCase(ctx, {lhs: randn(rand, R * K), R, K, rhs: randn(rand, E * K * N), E, N,
        segments: Int32Array.from([2, 3, 5]), transposeRhs: false, bias: randn(rand, E * N)});
    });

    it('counts form [E] equals the packed offsets form [E+1]', async () => {
      const rand = rng(33);
      const E = 3, K = 4, N = 5, R = 7;
      const lhs = randn(rand, R * K), rhs = randn(rand, E * K * N), bias = randn(rand, E * N);
      await runGemmCase(ctx, {lhs, R, K, rhs, E, N, segments: Int32Array.from([2, 0, 3]), transposeRhs: false, bias});
      await runGemmCase(ctx, {lhs, R, K, rhs, E, N, segments: Int32Array.from([0, 2, 2, 5]), transposeRhs: false, bias});
    });

    it('a single expert (E = 1) in both segment forms', async () => {
      const rand = rng(36);
      const lhs = randn(rand, 4 * 3), rhs = randn(rand, 3 * 2), bias = randn(rand, 2);
      await runGemmCase(ctx, {lhs, R: 4, K: 3, rhs, E: 1, N: 2, segments: Int32Array.from([0, 3]), transposeRhs: false, bias});
      await runGemmCase(ctx, {lhs, R: 4, K: 3, rhs, E: 1, N: 2, segments: Int32Array.from([4]), transposeRhs: true, bias});
    });

    it('R = 0 and all segments empty give an empty / all-zero output', async () => {
      const rand = rng(34);
      await runGemmCase(ctx, {lhs: new Float32Array(0), R: 0, K: 3, rhs: randn(rand, 2 * 3 * 4), E: 2, N: 4,
        segments: Int32Array.from([0, 0, 0]), transposeRhs: false, bias: randn(rand, 8)});
      await runGemmCase(ctx, {lhs: randn(rand, 5 * 3), R: 5, K: 3, rhs: randn(rand, 2 * 3 * 4), E: 2, N: 4,
        segments: Int32Array.from([0, 0]), transposeRhs: true, bias: randn(rand, 8)});
    });

    it('K = 0: an empty sum, so a row in a segment is its expert\'s bias (zero without one)', async () => {
      const rand = rng(37);
      // Offsets with a row in no segment; counts; transposed; and without a bias (all zeros).
      await runGemmCase(ctx, {lhs: new Float32Array(0), R: 4, K: 0, rhs: new Float32Array(0), E: 2, N: 3,
        segments: Int32Array.from([0, 2, 3]), transposeRhs: false, bias: randn(rand, 6)});
      await runGemmCase(ctx, {lhs: new Float32Array(0), R: 3, K: 0, rhs: new Float32Array(0), E: 2, N: 4,
        segments: Int32Array.from([1, 2]), transposeRhs: true, bias: randn(rand, 8)});
      await runGemmCase(ctx, {lhs: new Float32Array(0), R: 3, K: 0, rhs: new Float32Array(0), E: 2, N: 4,
        segments: Int32Array.from([0, 1, 3]), transposeRhs: false, bias: null});
    });

    it('a larger single-expert product (K = 256, accumulation error stays < 1e-4)', async () => {
      const rand = rng(35);
      const R = ctx.full ? 33 : 5, K = 256, N = ctx.full ? 40 : 8;
      await runGemmCase(ctx, {lhs: randn(rand, R * K), R, K, rhs: randn(rand, K * N), E: 1, N,
        segments: Int32Array.from([R]), transposeRhs: false, bias: null});
    });
  });
}
