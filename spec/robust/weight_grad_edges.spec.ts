// batchedGemmWeightGrad with non-finite values (issue 10, item 7): exactly the per-segment sum in IEEE arithmetic on
// every path: a NaN or Inf of one expert's rows stays in that expert, rows in no segment are ignored, and
// 0 * Inf inside a segment is NaN (the cpu kernel used to skip zero lhs values; the composite path used to
// multiply every row by a 0/1 membership, spreading 0 * NaN into every expert).
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemmWeightGrad} from 'tfjs-moe';

import {expectNoLeak} from '../helpers/util.js';
import {refBatchedGemmWeightGrad} from '../reference/moe_reference.js';
import {describeOnPaths} from './paths.js';

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    const ok = Number.isNaN(w) ? Number.isNaN(g) : !Number.isFinite(w) ? g === w : Math.abs(g - w) <= 1e-5 * scale;
    expect(ok).withContext(`${what}: element ${i} is ${g}, the per-segment sum is ${w}`).toBeTrue();
  }
}

describeOnPaths('robust: batchedGemmWeightGrad with NaN/Inf', path => {
  it('keeps a NaN/Inf in its own expert; rows outside every segment are ignored; 0 * Inf is NaN', async () => {
    const R = 7, K = 2, N = 3;
    const offsets = [0, 2, 4, 6];  // row 6 is in no segment
    const lhs = Float32Array.from([
      0, 1,     // row 0 (expert 0): a zero times dy's Inf below -> NaN in expert 0 only
      2, -1,    // row 1
      NaN, 3,   // row 2 (expert 1): NaN stays in expert 1
      1, 1,     // row 3
      0.5, -2,  // row 4 (expert 2)
      1, 4,     // row 5
      NaN, NaN, // row 6: in no segment
    ]);
    const dy = Float32Array.from([
      Infinity, 1, 2,
      1, -1, 0.5,
      1, 2, 3,
      -1, 0, 1,
      2, 2, -2,
      0.25, 1, -1,
      Infinity, NaN, -Infinity,
    ]);
    const want = refBatchedGemmWeightGrad(lhs, dy, K, N, offsets);
    for (const transposeOut of [false, true]) {
      for (const asCounts of [false, true]) {
        await expectNoLeak(async () => {
          const l = tf.tensor2d(lhs, [R, K]), d = tf.tensor2d(dy, [R, N]);
          const segs = asCounts ? tf.tensor1d([2, 2, 2], 'int32') : tf.tensor1d(offsets, 'int32');
          const out = path.call(() => batchedGemmWeightGrad(l, d, segs, 3, {transposeOut}));
          const got = await out.data();
          tf.dispose([l, d, segs, out]);
          const expected = transposeOut ? Float64Array.from({length: want.length}, (_, i) => {
            const e = Math.floor(i / (K * N)), nn = Math.floor((i % (K * N)) / K), kk = i % K;
            return want[(e * K + kk) * N + nn];
          }) : want;
          expectSame(got, expected, `transposeOut ${transposeOut}, ${asCounts ? 'counts' : 'offsets'}`);
        });
      }
    }
  });
});
