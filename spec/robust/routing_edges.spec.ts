// Routing edge values on every path (issue 10, items 4 and 5): the renormalisation denominator is clamped at 1e-12
// (no 0/0 when a bias picks experts whose softmax underflowed), and an expert of a dropped group is never chosen,
// not even over a NaN of a kept group. Compared with the float64 reference, which implements the same rules.
import * as tf from '@tensorflow/tfjs-core';
import {getMoeScores, moeTopkSelect} from 'tfjs-moe';

import {expectNoLeak, relError} from '../helpers/util.js';
import {refGetMoeScores, refMoeTopkSelect} from '../reference/moe_reference.js';
import {describeOnPaths, EdgePath} from './paths.js';

async function read(ts: tf.Tensor[]): Promise<Array<Float32Array | Int32Array>> {
  const out = await Promise.all(ts.map(t => t.data() as Promise<Float32Array | Int32Array>));
  tf.dispose(ts);
  return out;
}

/** The specs of one path (cuda_edges.spec.ts runs them on the cuda op kernels too). */
export function routingEdgeSpecs(path: EdgePath): void {
  it('moeTopkSelect: a bias choosing experts whose p underflowed gives finite weights (clamped denominator)', async () => {
    const E = 4, k = 2;
    // Row 0: p = 0 for experts 1..3 (exp(-1000) underflows); row 1: p ~ 1e-30 (sum < 1e-12); row 2: ordinary.
    const logits = Float32Array.from([0, -1000, -1000, -1000, 0, -69, -69, -70, 0.5, 1, -1, 2]);
    const bias = Float32Array.from([0, 10, 10, 0]);
    await expectNoLeak(async () => {
      const lt = tf.tensor2d(logits, [3, E]), bt = tf.tensor1d(bias);
      const {topkIds, topkWeights} = path.call(() => moeTopkSelect(lt, bt, k, true));
      const [ids, weights] = await read([topkIds, topkWeights]);
      tf.dispose([lt, bt]);
      const ref = refMoeTopkSelect(logits, 3, E, bias, k, true);
      expect(Array.from(ids)).toEqual(Array.from(ref.ids));
      expect(Array.from(weights).every(Number.isFinite)).withContext(`weights ${weights}`).toBeTrue();
      expect(Array.from(weights.subarray(0, 2))).toEqual([0, 0]);
      // Rows 1-2 against the reference (row 1's weights are ~1e-18: compare per row).
      expect(relError(weights.subarray(2, 4), ref.weights.subarray(2, 4))).toBeLessThan(1e-5);
      expect(relError(weights.subarray(4, 6), ref.weights.subarray(4, 6))).toBeLessThan(1e-5);
    });
  });

  it('moeTopkSelect: the weights\' gradient is finite where the clamp applies (0/0 before)', async () => {
    const E = 4, k = 2;
    const logits = Float32Array.from([0, -1000, -1000, -1000, 0, -69, -69, -70, 0.5, 1, -1, 2]);
    await expectNoLeak(async () => {
      const lt = tf.tensor2d(logits, [3, E]), bt = tf.tensor1d([0, 10, 10, 0]);
      const coef = tf.tensor2d([1, -2, 0.5, 3, 1, 1], [3, k]);
      const grad = path.call(() => tf.grad((l: tf.Tensor) =>
          tf.sum(tf.mul(moeTopkSelect(l as tf.Tensor2D, bt as tf.Tensor1D, k, true).topkWeights, coef)))(lt));
      const g = await grad.data();
      tf.dispose([lt, bt, coef, grad]);
      expect(Array.from(g).every(Number.isFinite)).withContext(`gradient ${Array.from(g)}`).toBeTrue();
      // Row 0: every chosen p is exactly 0, so is the gradient.
      expect(Array.from(g.subarray(0, E)).every(v => v === 0)).withContext(`row 0 gradient ${g.subarray(0, E)}`).toBeTrue();
    });
  });

  it('getMoeScores: experts of dropped groups are never chosen, even over NaN scores of kept groups', async () => {
    const E = 12, nGroup = 4, topkGroup = 2, k = 6, G = E / nGroup;
    // Groups of 3. Token 0: NaN logits inside the two best groups; token 1: NaN through the bias instead (finite
    // weights); token 2: ordinary, with ties.
    const logits = Float32Array.from([
      5, 4, NaN, 3, 3, NaN, 1, 1, 1, 0, 0, 0,
      5, 4, 2, 3, 3, 2, 1, 1, 1, 0, 0, 0,
      1, 1, 0, 0, 2, -1, 2, 0.5, 0, 3, -3, 0,
    ]);
    const bias = Float32Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const biasNaN = Float32Array.from([0, 0, NaN, 0, 0, NaN, 0, 0, 0, 0, 0, 0]);
    for (const [b, rows] of [[null, [0, 2]], [biasNaN, [1]], [bias, [0, 1, 2]]] as Array<[Float32Array | null, number[]]>) {
      await expectNoLeak(async () => {
        const lt = tf.tensor2d(logits, [3, E]);
        const bt = b == null ? null : tf.tensor1d(b);
        const out = path.call(() => getMoeScores(lt, nGroup, topkGroup, k, 2.5, bt, true));
        const [, weights, ids] = await read([out.scores, out.topkWeights, out.topkIds]);
        tf.dispose([lt, ...(bt == null ? [] : [bt])]);
        const ref = refGetMoeScores(logits, 3, E, nGroup, topkGroup, k, 2.5, b, true);
        for (const t of rows) {
          const got = Array.from(ids.subarray(t * k, (t + 1) * k));
          expect(got).withContext(`token ${t} ids, bias ${b == null ? 'none' : 'given'}`)
              .toEqual(Array.from(ref.ids.subarray(t * k, (t + 1) * k)));
          const kept = new Set(got.map(e => Math.floor(e / G)));
          expect(kept.size).withContext(`token ${t}: groups used by ${got}`).toBeLessThanOrEqual(topkGroup);
          expect(relError(weights.subarray(t * k, (t + 1) * k), ref.weights.subarray(t * k, (t + 1) * k)))
              .withContext(`token ${t} weights`).toBeLessThan(1e-5);
        }
      });
    }
  });
}

describeOnPaths('robust: routing edge values', routingEdgeSpecs);
