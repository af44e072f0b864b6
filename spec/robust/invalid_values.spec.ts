// Invalid index values (issue 10, item 8; rules in docs/semantics.md, common rules and sections 3 and 6). The cpu kernels hold the values
// on the host and reject them, naming the op and argument; every other path (composite on any backend, webgpu)
// cannot look without a device read, so it produces the documented result: an id outside [0,E) joins no expert
// and gets rowMap = -1 (the one "no row" sentinel), and moeCombine adds nothing for a row outside [0,R) or an
// id outside the bias's experts. Nothing is read or written out of bounds, and no tfjs-internal error escapes.
import * as tf from '@tensorflow/tfjs-core';
import {moeCombine, moePermute} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak} from '../helpers/util.js';
import {describeOnPaths, EdgePath} from './paths.js';

/** The specs of one path (cuda_edges.spec.ts runs them on the cuda op kernels too). */
export function invalidValueSpecs(path: EdgePath): void {
  // Kernels that hold the values on the host reject them: cpu, and the cuda op kernels (backend 'tensorflow').
  const rejects = !path.composite && path.backend !== 'webgpu';

  it(rejects ? 'moePermute rejects ids outside [0,E) naming the argument' :
               'moePermute: ids outside [0,E) join no expert and get rowMap -1', async () => {
    const T = 3, k = 2, D = 2, E = 3;
    const xs = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const idsData = Int32Array.from([2, 7, -1, 0, 2, 1]);
    await expectNoLeak(async () => {
      const x = tf.tensor2d(xs, [T, D]), ids = tf.tensor2d(idsData, [T, k], 'int32');
      if (rejects) {
        expectThrowsNoLeak(() => path.call(() => moePermute(x as tf.Tensor2D, ids as tf.Tensor2D, E, 2)),
            /moePermute: argument 'topkIds' must hold expert ids in \[0, numExperts = 3\), got topkIds\[0,1\] = 7/);
        tf.dispose([x, ids]);
        return;
      }
      const out = path.call(() => moePermute(x as tf.Tensor2D, ids as tf.Tensor2D, E, 2));
      const [px, tpe, offsets, rowMap] = await Promise.all(
          [out.permutedX, out.tokensPerExpert, out.expertOffsets, out.rowMap].map(t => t.data()));
      tf.dispose([x, ids, out.permutedX, out.tokensPerExpert, out.expertOffsets, out.rowMap]);
      // Valid entries: (t0,s0)->e2, (t1,s1)->e0, (t2,s0)->e2, (t2,s1)->e1. Padded to 2: e0 [0,2), e1 [2,4), e2 [4,6).
      expect(Array.from(tpe)).toEqual([1, 1, 2]);
      expect(Array.from(offsets)).toEqual([0, 2, 4, 6]);
      expect(Array.from(rowMap)).toEqual([4, -1, -1, 0, 5, 2]);
      const R = T * k + E * (2 - 1);
      expect(px.length).toBe(R * D);
      const rows = Array.from({length: R}, (_, r) => Array.from(px.subarray(r * D, (r + 1) * D)));
      expect(rows).toEqual([[3, 4], [0, 0], [5, 6], [0, 0], [1, 2], [5, 6], [0, 0], [0, 0], [0, 0]]);
    });
  });

  it(rejects ? 'moeCombine rejects rows outside [0,R) and ids outside the bias experts' :
               'moeCombine: rows outside [0,R) and ids outside the bias experts add nothing', async () => {
    const R = 3, D = 2, T = 2, k = 3;
    const y = Float32Array.from([1, 2, 10, 20, 100, 200]);
    const rowMapData = Int32Array.from([0, -1, 2, 3, 1, 7]);
    const weights = Float32Array.from([1, 5, 0.5, 9, 2, 4]);
    const idsData = Int32Array.from([0, 1, 4, 1, -2, 0]);
    const bias = Float32Array.from([0.25, 0.5, 1, 2]);  // [E=2, D]
    for (const withBias of [false, true]) {
      for (const weightsApplied of [false, true]) {
        await expectNoLeak(async () => {
          const yt = tf.tensor2d(y, [R, D]), rm = tf.tensor2d(rowMapData, [T, k], 'int32');
          const wt = tf.tensor2d(weights, [T, k]), it = tf.tensor2d(idsData, [T, k], 'int32');
          const bt = tf.tensor2d(bias, [2, D]);
          const options = {weightsApplied, downProjBias: withBias ? bt as tf.Tensor2D : null};
          const run = () => path.call(() => moeCombine(yt as tf.Tensor2D, rm as tf.Tensor2D, wt as tf.Tensor2D,
              it as tf.Tensor2D, options));
          if (rejects) {
            expectThrowsNoLeak(run, /moeCombine: argument 'rowMap' must hold rows of y in \[0, R = 3\), got rowMap\[0,1\] = -1/);
            tf.dispose([yt, rm, wt, it, bt]);
            return;
          }
          const out = run();
          const got = Array.from(await out.data());
          tf.dispose([yt, rm, wt, it, bt, out]);
          const want = new Array(T * D).fill(0);
          for (let t = 0; t < T; t++) {
            for (let j = 0; j < k; j++) {
              const s = t * k + j, row = rowMapData[s], w = weights[s], e = idsData[s];
              for (let d = 0; d < D; d++) {
                if (row >= 0 && row < R) want[t * D + d] += (weightsApplied ? 1 : w) * y[row * D + d];
                if (withBias && e >= 0 && e < 2) want[t * D + d] += w * bias[e * D + d];
              }
            }
          }
          expect(got).withContext(`bias ${withBias}, weightsApplied ${weightsApplied}`).toEqual(want);
        });
      }
    }
  });

  if (!rejects) {
    it('gradients: a slot with an invalid row or id takes and gives no gradient (moeCombine, moePermute)', async () => {
      const R = 3, D = 2, T = 2, k = 3, E = 2;
      const y = Float32Array.from([1, 2, 10, 20, 100, 200]);
      const rowMapData = Int32Array.from([0, -1, 2, 3, 1, 7]);
      const weights = Float32Array.from([1, 5, 0.5, 9, 2, 4]);
      const idsData = Int32Array.from([0, 1, 4, 1, -2, 0]);
      const bias = Float32Array.from([0.25, 0.5, 1, 2]);
      const dout = Float32Array.from([1, -2, 3, 0.5]);
      const validRow = (s: number) => rowMapData[s] >= 0 && rowMapData[s] < R;
      const validId = (s: number) => idsData[s] >= 0 && idsData[s] < E;
      for (const weightsApplied of [false, true]) {
        await expectNoLeak(async () => {
          const yt = tf.tensor2d(y, [R, D]), rm = tf.tensor2d(rowMapData, [T, k], 'int32');
          const wt = tf.tensor2d(weights, [T, k]), it = tf.tensor2d(idsData, [T, k], 'int32');
          const bt = tf.tensor2d(bias, [E, D]), dt = tf.tensor2d(dout, [T, D]);
          const f = (a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => path.call(() => moeCombine(a as tf.Tensor2D,
              rm as tf.Tensor2D, w as tf.Tensor2D, it as tf.Tensor2D, {weightsApplied, downProjBias: b as tf.Tensor2D}));
          const grads = tf.grads(f)([yt, wt, bt], dt);
          const [dy, dw, db] = await Promise.all(grads.map(g => g.data()));
          tf.dispose([yt, rm, wt, it, bt, dt, ...grads]);
          const wantDy = new Array(R * D).fill(0), wantDw = new Array(T * k).fill(0), wantDb = new Array(E * D).fill(0);
          for (let t = 0; t < T; t++) {
            for (let j = 0; j < k; j++) {
              const s = t * k + j, row = rowMapData[s], e = idsData[s], w = weights[s];
              for (let d = 0; d < D; d++) {
                const g = dout[t * D + d];
                if (validRow(s)) {
                  wantDy[row * D + d] += (weightsApplied ? 1 : w) * g;
                  if (!weightsApplied) wantDw[s] += y[row * D + d] * g;
                }
                if (validId(s)) {
                  wantDw[s] += bias[e * D + d] * g;
                  wantDb[e * D + d] += w * g;
                }
              }
            }
          }
          const ctx = `weightsApplied ${weightsApplied}`;
          expect(Array.from(dy)).withContext(`dy, ${ctx}`).toEqual(wantDy);
          expect(Array.from(dw)).withContext(`dweights, ${ctx}`).toEqual(wantDw);
          expect(Array.from(db)).withContext(`dbias, ${ctx}`).toEqual(wantDb);
        });
      }
      // moePermute: an id outside [0,E) has rowMap -1 and copies nothing, so its slot adds nothing to dx.
      await expectNoLeak(async () => {
        const x = tf.tensor2d([1, 2, 3, 4], [2, 2]), ids = tf.tensor2d([1, 5, -1, 0], [2, 2], 'int32');
        const c = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]);  // R = T k = 4 rows
        const dx = tf.grad((a: tf.Tensor) => path.call(() => tf.sum(tf.mul(moePermute(a as tf.Tensor2D,
            ids as tf.Tensor2D, 2).permutedX, c))))(x);
        const got = Array.from(await dx.data());
        tf.dispose([x, ids, c, dx]);
        // Rows: expert 0 gets (t1, s1) at row 0, expert 1 gets (t0, s0) at row 1.
        expect(got).toEqual([3, 4, 1, 2]);
      });
    });
  }
}

describeOnPaths('robust: invalid ids and rows', invalidValueSpecs);
