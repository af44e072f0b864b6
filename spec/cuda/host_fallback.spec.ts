/**
 * Fallback: on a host-memory backend without our CUDA kernels (tfjs-node without CUDA, stood in for by the cpu
 * backend under another name), every op takes the composite path and still matches the float64 reference.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, fusedSwigluScale, hasMoeKernel, moeCombine, moePermute, moeTopkSelect} from 'tfjs-moe';

import {expectNoLeak, randn, readAll, recordError, relError, rng} from '../helpers/util.js';
import {refBatchedGemm, refMoeCombine, refMoePermute, refMoeTopkSelect, refSwigluScale} from '../reference/moe_reference.js';
import {onBackend, registerHostStandIn} from './tensorflow_stand_in.js';

const HOST = 'tensorflow-without-cuda';

describe('host backend without CUDA kernels (composite fallback)', () => {
  beforeAll(() => registerHostStandIn(HOST));

  it('has none of our kernels registered', () => {
    expect(hasMoeKernel('MoeCombine', HOST)).toBeFalse();
    expect(hasMoeKernel('BatchedGemm', HOST)).toBeFalse();
  });

  it('routes, permutes, multiplies and combines like the reference', async () => {
    await onBackend(HOST, () => expectNoLeak(async () => {
      const rand = rng(20251123);
      const T = 6, E = 5, k = 2, D = 7, N = 9;
      const logits = randn(rand, T * E, 2);
      const ref = refMoeTopkSelect(logits, T, E, null, k, true);
      const logitsT = tf.tensor2d(logits, [T, E]);
      const routed = moeTopkSelect(logitsT, null, k, true);
      logitsT.dispose();
      const [ids, weights] = await readAll(routed.topkIds, routed.topkWeights);
      expect(Array.from(ids)).toEqual(Array.from(ref.ids));
      const errRoute = relError(weights, ref.weights);
      recordError('host fallback moeTopkSelect', errRoute);
      expect(errRoute).toBeLessThan(1e-5);

      const x = randn(rand, T * D);
      const xT = tf.tensor2d(x, [T, D]), idsT = tf.tensor2d(ids, [T, k], 'int32');
      const perm = moePermute(xT, idsT, E);
      const refPerm = refMoePermute(x, T, D, ids, k, E, 1);
      const rhs = randn(rand, E * D * N);
      const rhsT = tf.tensor3d(rhs, [E, D, N]);
      const y = batchedGemm(perm.permutedX, rhsT, perm.expertOffsets);
      const refY = refBatchedGemm(refPerm.permutedX, refPerm.R, D, rhs, E, N, refPerm.expertOffsets, false, null);
      const wT = tf.tensor2d(weights, [T, k]);
      const yHalf = y.slice([0, 0], [T * k, N - (N % 2)]);
      const act = fusedSwigluScale(yHalf as tf.Tensor2D);
      const out = moeCombine(y, perm.rowMap, wT, idsT);
      const [py, yy, aa, oo] = await readAll(perm.permutedX, y, act, out);
      expect(relError(py, refPerm.permutedX)).toBe(0);
      const errGemm = relError(yy, refY);
      recordError('host fallback batchedGemm', errGemm);
      expect(errGemm).toBeLessThan(1e-4);
      const halfCols = (N - (N % 2)) / 2;
      const yHalf64 = new Float64Array(T * k * 2 * halfCols);
      for (let r = 0; r < T * k; r++) for (let c = 0; c < 2 * halfCols; c++) yHalf64[r * 2 * halfCols + c] = yy[r * N + c];
      expect(relError(aa, refSwigluScale(yHalf64, T * k, halfCols, null))).toBeLessThan(1e-5);
      const refOut = refMoeCombine(yy, T * k, N, refPerm.rowMap, weights, ids, T, k, null, false);
      expect(relError(oo, refOut)).toBeLessThan(1e-5);
      tf.dispose([xT, idsT, rhsT, wT, yHalf, perm.tokensPerExpert, perm.expertOffsets, perm.rowMap]);
    }));
  });
});
