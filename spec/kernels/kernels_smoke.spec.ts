/**
 * Quick checks of the cpu kernels and the composite path on small hand-worked cases and inline float64 loops.
 * The random-shape conformance suite against spec/reference lives in spec/ops/.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS, batchedGemm, fusedSwigluScale, getMoeScores, hasMoeKernel, KernelPath, moeCombine, moePermute, moeTopkSelect, registerHostKernels, setKernelPath} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, randInt, randn, readAll, recordError, relError, rng} from '../helpers/util.js';

function softmax64(row: number[]): number[] {
  const m = Math.max(...row);
  const ex = row.map(v => Math.exp(v - m));
  const s = ex.reduce((a, b) => a + b, 0);
  return ex.map(v => v / s);
}
const sigmoid64 = (v: number) => 1 / (1 + Math.exp(-v));

for (const path of ['auto', 'composite'] as KernelPath[]) {
  describe(`kernels smoke (${path === 'auto' ? 'cpu kernels' : 'composite'})`, () => {
    beforeEach(() => setKernelPath(path));
    afterEach(() => setKernelPath('auto'));

    it('moeTopkSelect: ties to the lower expert, bias only selects, NaN rows pick 0..k-1', async () => {
      await expectNoLeak(async () => {
        const rows = [[1, 3, 3, 0.5], [1, 3, 3, 0.5], [NaN, 1, 2, 3]];
        const logits = tf.tensor2d(rows);
        const noBias = moeTopkSelect(logits, null, 2, true);
        const bias = tf.tensor1d([0, 0, 0, 0.9]);
        const biased = moeTopkSelect(logits, bias, 2, false);
        const [ids, w, bIds, bW] = await readAll(noBias.topkIds, noBias.topkWeights, biased.topkIds, biased.topkWeights);
        expect(noBias.topkIds.dtype).toBe('int32');
        expect(Array.from(ids)).toEqual([1, 2, 1, 2, 0, 1]);
        expect(Array.from(w.slice(0, 4))).toEqual([0.5, 0.5, 0.5, 0.5]);
        expect(Number.isNaN(w[4]) && Number.isNaN(w[5])).toBeTrue();
        expect(Array.from(bIds.slice(0, 2))).toEqual([3, 1]);
        const p = softmax64(rows[0]);
        const err = relError(bW.slice(0, 2), [p[3], p[1]]);
        recordError(`smoke moeTopkSelect ${path}`, err);
        expect(err).toBeLessThan(1e-5);
        logits.dispose();
        bias.dispose();
      });
    });

    it('getMoeScores: keeps the best groups, weights from unbiased scores times rsf, NaN fallback', async () => {
      await expectNoLeak(async () => {
        const row = [1, 3, 3, 0.5, 2, 2, -1, 0];
        const logits = tf.tensor2d([row, row.map(() => NaN)]);
        const bias = tf.tensor1d([0, 0, 0, 0, 0, 0, 0, 0.4]);
        const out = getMoeScores(logits, 4, 2, 3, 2.5, null, true);
        const outBias = getMoeScores(logits, 4, 2, 3, 1, bias, false);
        const [scores, w, ids, , wb, idsb] =
            await readAll(out.scores, out.topkWeights, out.topkIds, outBias.scores, outBias.topkWeights, outBias.topkIds);
        const s = row.map(sigmoid64);
        // Groups (2 experts each): {0,1} 1.68, {2,3} 1.58, {4,5} 1.76, {6,7} 0.77 -> keep {4,5}, {0,1}.
        expect(Array.from(ids)).toEqual([1, 4, 5, 0, 1, 2]);
        const sum = s[1] + s[4] + s[5];
        const err = Math.max(
            relError(w.slice(0, 3), [s[1], s[4], s[5]].map(v => v / sum * 2.5)), relError(scores.slice(0, 8), s));
        recordError(`smoke getMoeScores ${path}`, err);
        expect(err).toBeLessThan(1e-5);
        expect(Array.from(w.slice(3))).toEqual([1 / 3, 1 / 3, 1 / 3].map(Math.fround));
        // Bias 0.4 on expert 7 lifts group {6,7} to 1.67 (> {2,3}): kept {4,5}, {0,1} still; then no renorm.
        expect(Array.from(idsb.slice(0, 3))).toEqual([1, 4, 5]);
        expect(relError(wb.slice(0, 3), [s[1], s[4], s[5]])).toBeLessThan(1e-6);
        logits.dispose();
        bias.dispose();
      });
    });

    it('moePermute: stable expert-major order, aligned offsets, zero padding', async () => {
      await expectNoLeak(async () => {
        const x = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
        const ids = tf.tensor2d([[2, 0], [0, 1], [2, 2]], [3, 2], 'int32');
        const a1 = moePermute(x, ids, 3, 1);
        const a4 = moePermute(x, ids, 3, 4);
        expect([a1.tokensPerExpert.dtype, a1.expertOffsets.dtype, a1.rowMap.dtype]).toEqual(['int32', 'int32', 'int32']);
        const [px, tpe, off, rm, px4, , off4, rm4] = await readAll(
            a1.permutedX, a1.tokensPerExpert, a1.expertOffsets, a1.rowMap, a4.permutedX, a4.tokensPerExpert,
            a4.expertOffsets, a4.rowMap);
        expect(Array.from(px)).toEqual([1, 2, 3, 4, 3, 4, 1, 2, 5, 6, 5, 6]);
        expect(Array.from(tpe)).toEqual([2, 1, 3]);
        expect(Array.from(off)).toEqual([0, 2, 3, 6]);
        expect(Array.from(rm)).toEqual([3, 0, 1, 2, 4, 5]);
        expect(px4.length).toBe(15 * 2);
        expect(Array.from(off4)).toEqual([0, 4, 8, 12]);
        expect(Array.from(rm4)).toEqual([8, 0, 1, 4, 9, 10]);
        expect(Array.from(px4.slice(0, 8))).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
        expect(Array.from(px4.slice(16, 24))).toEqual([1, 2, 5, 6, 5, 6, 0, 0]);
        x.dispose();
        ids.dispose();
      });
    });

    it('batchedGemm matches a float64 loop (offsets or counts, transposed, bias, empty and unused rows)', async () => {
      const rand = rng(1234);
      // [R,K,E,N]: E <= 2 takes the composite's per-expert loop; the last case (R*K*N > 2^24) the per-row
      // weight gather in several chunks.
      const shapes = [[9, 5, 3, 4], [17, 33, 4, 7], [1, 8, 3, 2], [12, 6, 2, 5], [13, 4, 1, 3], [70, 512, 3, 520]];
      for (const [numRows, k, numExperts, n] of shapes) {
        for (const transposeRhs of [false, true]) {
          for (const asOffsets of [true, false]) {
            if (numRows * k * n > 1 << 24 && !asOffsets) continue;  // the big case once per layout is enough
            const lhsV = randn(rand, numRows * k), rhsV = randn(rand, numExperts * k * n), biasV = randn(rand, numExperts * n);
            const counts = Array.from({length: numExperts}, () => 0);
            let left = randInt(rand, 0, numRows);
            for (let e = 0; e < numExperts; e++) {
              counts[e] = e === numExperts - 1 ? left : randInt(rand, 0, left);
              left -= counts[e];
            }
            const start = asOffsets ? randInt(rand, 0, numRows - counts.reduce((a, b) => a + b, 0)) : 0;
            const offsets = [start];
            counts.forEach(c => offsets.push(offsets[offsets.length - 1] + c));
            const expected = new Float64Array(numRows * n);
            for (let e = 0; e < numExperts; e++) {
              for (let r = offsets[e]; r < offsets[e + 1]; r++) {
                for (let j = 0; j < n; j++) {
                  let acc = biasV[e * n + j];
                  for (let i = 0; i < k; i++) {
                    const w = transposeRhs ? rhsV[(e * n + j) * k + i] : rhsV[(e * k + i) * n + j];
                    acc += lhsV[r * k + i] * w;
                  }
                  expected[r * n + j] = acc;
                }
              }
            }
            await expectNoLeak(async () => {
              const lhs = tf.tensor2d(lhsV, [numRows, k]);
              const rhs = tf.tensor3d(rhsV, transposeRhs ? [numExperts, n, k] : [numExperts, k, n]);
              const bias = tf.tensor2d(biasV, [numExperts, n]);
              const segments = tf.tensor1d(asOffsets ? offsets : counts, 'int32');
              const [out] = await readAll(batchedGemm(lhs, rhs, segments, {transposeRhs, bias}));
              const err = relError(out, expected);
              recordError(`smoke batchedGemm ${path}`, err);
              expect(err).withContext(`${[numRows, k, numExperts, n]} t=${transposeRhs} o=${asOffsets}`).toBeLessThan(1e-5);
              tf.dispose([lhs, rhs, bias, segments]);
            });
          }
        }
      }
    });

    it('fusedSwigluScale matches float64, with and without scale', async () => {
      const rand = rng(7);
      const numRows = 5, inter = 6;
      const xV = randn(rand, numRows * 2 * inter, 3), sV = randn(rand, numRows);
      await expectNoLeak(async () => {
        const x = tf.tensor2d(xV, [numRows, 2 * inter]);
        const scale = tf.tensor1d(sV);
        const [plain, scaled] = await readAll(fusedSwigluScale(x), fusedSwigluScale(x, scale));
        const expected = (withScale: boolean) => Array.from({length: numRows * inter}, (_, idx) => {
          const r = Math.floor(idx / inter), i = idx % inter;
          const g = xV[r * 2 * inter + i], u = xV[r * 2 * inter + inter + i];
          return g * sigmoid64(g) * u * (withScale ? sV[r] : 1);
        });
        const err = Math.max(relError(plain, expected(false)), relError(scaled, expected(true)));
        recordError(`smoke fusedSwigluScale ${path}`, err);
        expect(err).toBeLessThan(1e-5);
        tf.dispose([x, scale]);
      });
    });

    it('moeCombine: weights y rows (unless applied) and always weights the bias', async () => {
      await expectNoLeak(async () => {
        const y = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
        const rowMap = tf.tensor2d([[2, 0], [1, 1]], [2, 2], 'int32');
        const w = tf.tensor2d([[0.5, 0.25], [1, 2]]);
        const ids = tf.tensor2d([[1, 0], [0, 1]], [2, 2], 'int32');
        const bias = tf.tensor2d([[10, 20], [100, 200]]);
        const [a, b] = await readAll(
            moeCombine(y, rowMap, w, ids, {downProjBias: bias}), moeCombine(y, rowMap, w, ids, {weightsApplied: true}));
        expect(Array.from(a)).toEqual([
          0.5 * 5 + 0.25 * 1 + 0.5 * 100 + 0.25 * 10, 0.5 * 6 + 0.25 * 2 + 0.5 * 200 + 0.25 * 20,
          3 + 2 * 3 + 10 + 2 * 100, 4 + 2 * 4 + 20 + 2 * 200,
        ]);
        expect(Array.from(b)).toEqual([6, 8, 6, 8]);
        tf.dispose([y, rowMap, w, ids, bias]);
      });
    });

    it('works with no tokens (T = 0)', async () => {
      await expectNoLeak(async () => {
        const logits = tf.zeros([0, 4]) as tf.Tensor2D;
        const x = tf.zeros([0, 3]) as tf.Tensor2D;
        const sel = moeTopkSelect(logits, null, 2);
        const sc = getMoeScores(logits, 2, 1, 2, 1, null);
        const perm = moePermute(x, sel.topkIds, 4, 2);
        expect(perm.permutedX.shape).toEqual([4, 3]);
        const segs = perm.expertOffsets;
        const rhs = tf.zeros([4, 3, 5]) as tf.Tensor3D, gate = tf.zeros([0, 4]) as tf.Tensor2D;
        const y = tf.zeros([0, 3]) as tf.Tensor2D;
        const g = batchedGemm(perm.permutedX, rhs, segs);
        const s = fusedSwigluScale(gate);
        const c = moeCombine(y, perm.rowMap, sel.topkWeights, sel.topkIds);
        expect(c.shape).toEqual([0, 3]);
        const [off, gOut] = await readAll(segs, g);
        expect(Array.from(off)).toEqual([0, 0, 0, 0, 0]);
        expect(Array.from(gOut).every(v => v === 0)).toBeTrue();
        tf.dispose([logits, x, sel.topkIds, sel.topkWeights, sc.scores, sc.topkIds, sc.topkWeights, perm.permutedX,
          perm.rowMap, perm.tokensPerExpert, s, c, rhs, gate, y]);
      });
    });
  });
}

describe('cpu kernels reject bad indices with the argument, index and value', () => {
  it('moePermute: expert id outside [0,E)', () => {
    const x = tf.ones([2, 3]) as tf.Tensor2D;
    const ids = tf.tensor2d([[0, 1], [4, 0]], [2, 2], 'int32');
    expectThrowsNoLeak(() => moePermute(x, ids, 4), /topkIds.*\[1,0\] = 4/);
    tf.dispose([x, ids]);
  });
  it('moeCombine: rowMap outside [0,R), ids outside the bias rows', () => {
    const y = tf.ones([4, 2]) as tf.Tensor2D;
    const w = tf.ones([2, 2]) as tf.Tensor2D;
    const ids = tf.tensor2d([[0, 1], [1, 3]], [2, 2], 'int32');
    const badRows = tf.tensor2d([[0, 1], [2, 4]], [2, 2], 'int32');
    const goodRows = tf.tensor2d([[0, 1], [2, 3]], [2, 2], 'int32');
    const bias = tf.ones([3, 2]) as tf.Tensor2D;
    expectThrowsNoLeak(() => moeCombine(y, badRows, w, ids), /rowMap.*\[1,1\] = 4/);
    expectThrowsNoLeak(() => moeCombine(y, goodRows, w, ids, {downProjBias: bias}), /topkIds.*\[1,1\] = 3/);
    tf.dispose([y, w, ids, badRows, goodRows, bias]);
  });
  it('batchedGemm: decreasing offsets, offsets past R, counts past R, negative counts', () => {
    const lhs = tf.ones([4, 2]) as tf.Tensor2D;
    const rhs = tf.ones([2, 2, 3]) as tf.Tensor3D;
    const cases: Array<[number[], RegExp]> = [
      [[0, 3, 2], /segments.*non-decreasing.*segments\[2\] = 2/], [[0, 2, 5], /segments\[2\] = 5/],
      [[3, 2], /segments.*at most R = 4/], [[-1, 2], /segments\[0\] = -1/],
    ];
    for (const [values, pattern] of cases) {
      const segments = tf.tensor1d(values, 'int32');
      expectThrowsNoLeak(() => batchedGemm(lhs, rhs, segments), pattern);
      segments.dispose();
    }
    tf.dispose([lhs, rhs]);
  });
});

describe('registerHostKernels', () => {
  it('registers every host kernel under another host backend name, once', async () => {
    const {MathBackendCPU} = await import('@tensorflow/tfjs-backend-cpu');
    const name = 'moe-host-test';
    tf.registerBackend(name, () => new MathBackendCPU());
    registerHostKernels(name);
    registerHostKernels(name);  // a second call must neither throw nor re-register
    for (const kernel of ALL_MOE_KERNELS) expect(hasMoeKernel(kernel, name)).withContext(kernel).toBeTrue();
    const previous = tf.getBackend();
    try {
      await tf.setBackend(name);
      await expectNoLeak(async () => {
        const logits = tf.tensor2d([[0, 2, 1]]);
        const {topkIds, topkWeights} = moeTopkSelect(logits, null, 2, false);
        const [ids] = await readAll(topkIds, topkWeights);
        expect(Array.from(ids)).toEqual([1, 2]);
        logits.dispose();
      });
    } finally {
      await tf.setBackend(previous);
      tf.removeBackend(name);
    }
  });
});
