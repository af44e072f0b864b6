/**
 * Bad input: every op rejects it with an error naming the op and the argument and saying what it got, before
 * any backend work, and leaks no tensor. The cpu kernels additionally check data (ids, segment offsets).
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, fusedSwigluScale, getMoeScores, moeCombine, moePermute, moeTopkSelect} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak} from '../../helpers/util.js';
import {ConformanceContext} from './context.js';

/** Lets a spec pass a value of the wrong type, as untyped JS callers can. */
function bad<T>(value: unknown): T {
  return value as T;
}

function argPattern(op: string, arg: string): RegExp {
  const escaped = arg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`${op}.*'${escaped}'.*got`);
}

export function describeBadInputConformance(ctx: ConformanceContext): void {
  const rejects = (op: string, arg: string, fn: () => unknown) =>
      expectThrowsNoLeak(() => ctx.call(fn), argPattern(op, arg));

  describe('bad input', () => {
    it('moeTopkSelect names the argument', async () => {
      await expectNoLeak(() => {
        const op = 'moeTopkSelect';
        const logits = tf.zeros([3, 4]) as tf.Tensor2D;
        const bias = tf.zeros([4]) as tf.Tensor1D;
        const extra = [tf.zeros([12]), tf.zeros([3, 4, 1]), tf.zeros([3, 4], 'int32'), tf.zeros([5]), tf.zeros([1, 4]),
          tf.zeros([4], 'int32')];
        rejects(op, 'gatingLogits', () => moeTopkSelect(bad(extra[0]), bias, 2));
        rejects(op, 'gatingLogits', () => moeTopkSelect(bad(extra[1]), bias, 2));
        rejects(op, 'gatingLogits', () => moeTopkSelect(bad(extra[2]), bias, 2));
        rejects(op, 'gatingLogits', () => moeTopkSelect(bad([[0, 1, 2, 3]]), null, 2));
        rejects(op, 'bias', () => moeTopkSelect(logits, bad(extra[3]), 2));
        rejects(op, 'bias', () => moeTopkSelect(logits, bad(extra[4]), 2));
        rejects(op, 'bias', () => moeTopkSelect(logits, bad(extra[5]), 2));
        rejects(op, 'bias', () => moeTopkSelect(logits, bad([0, 0, 0, 0]), 2));
        rejects(op, 'topK', () => moeTopkSelect(logits, bias, 5));  // topK > E
        rejects(op, 'topK', () => moeTopkSelect(logits, bias, 0));
        rejects(op, 'topK', () => moeTopkSelect(logits, bias, 1.5));
        rejects(op, 'topK', () => moeTopkSelect(logits, bias, bad('2')));
        rejects(op, 'renormalize', () => moeTopkSelect(logits, bias, 2, bad('yes')));
        tf.dispose([logits, bias, ...extra]);
      });
    });

    it('getMoeScores names the argument', async () => {
      await expectNoLeak(() => {
        const op = 'getMoeScores';
        const logits = tf.zeros([2, 8]) as tf.Tensor2D;
        const extra = [tf.zeros([8]), tf.zeros([2, 8], 'int32'), tf.zeros([9]), tf.zeros([8], 'int32')];
        rejects(op, 'gatingOutput', () => getMoeScores(bad(extra[0]), 2, 1, 2, 1, null));
        rejects(op, 'gatingOutput', () => getMoeScores(bad(extra[1]), 2, 1, 2, 1, null));
        rejects(op, 'gatingOutput', () => getMoeScores(bad([[1, 2]]), 1, 1, 1, 1, null));
        rejects(op, 'nGroup', () => getMoeScores(logits, 3, 1, 2, 1, null));   // 3 does not divide 8
        rejects(op, 'nGroup', () => getMoeScores(logits, 0, 1, 2, 1, null));
        rejects(op, 'topkGroup', () => getMoeScores(logits, 4, 5, 2, 1, null));  // topkGroup > nGroup
        rejects(op, 'topkGroup', () => getMoeScores(logits, 4, 0, 2, 1, null));
        rejects(op, 'topK', () => getMoeScores(logits, 4, 1, 3, 1, null));   // 3 > topkGroup * E/G = 2
        rejects(op, 'topK', () => getMoeScores(logits, 1, 1, 9, 1, null));   // topK > E
        rejects(op, 'topK', () => getMoeScores(logits, 2, 1, 0, 1, null));
        rejects(op, 'routedScalingFactor', () => getMoeScores(logits, 2, 1, 2, NaN, null));
        rejects(op, 'routedScalingFactor', () => getMoeScores(logits, 2, 1, 2, bad('2.5'), null));
        rejects(op, 'eScoreCorrectionBias', () => getMoeScores(logits, 2, 1, 2, 1, bad(extra[2])));
        rejects(op, 'eScoreCorrectionBias', () => getMoeScores(logits, 2, 1, 2, 1, bad(extra[3])));
        rejects(op, 'renormalize', () => getMoeScores(logits, 2, 1, 2, 1, null, bad(1)));
        tf.dispose([logits, ...extra]);
      });
    });

    it('moePermute names the argument', async () => {
      await expectNoLeak(() => {
        const op = 'moePermute';
        const x = tf.zeros([3, 4]) as tf.Tensor2D;
        const ids = tf.zeros([3, 2], 'int32') as tf.Tensor2D;
        const extra = [tf.zeros([12]), tf.zeros([3, 4], 'int32'), tf.zeros([3, 2]), tf.zeros([2, 2], 'int32'),
          tf.zeros([6], 'int32')];
        rejects(op, 'x', () => moePermute(bad(extra[0]), ids, 4));
        rejects(op, 'x', () => moePermute(bad(extra[1]), ids, 4));
        rejects(op, 'topkIds', () => moePermute(x, bad(extra[2]), 4));  // float ids
        rejects(op, 'topkIds', () => moePermute(x, bad(extra[3]), 4));  // T mismatch
        rejects(op, 'topkIds', () => moePermute(x, bad(extra[4]), 4));  // rank 1
        rejects(op, 'topkIds', () => moePermute(x, bad([[0, 1], [1, 2], [2, 3]]), 4));
        rejects(op, 'numExperts', () => moePermute(x, ids, 0));
        rejects(op, 'numExperts', () => moePermute(x, ids, 2.5));
        rejects(op, 'alignment', () => moePermute(x, ids, 4, 0));
        rejects(op, 'alignment', () => moePermute(x, ids, 4, 1.5));
        tf.dispose([x, ids, ...extra]);
      });
    });

    it('batchedGemm names the argument (segments must be an int32 tensor, never a JS array)', async () => {
      await expectNoLeak(() => {
        const op = 'batchedGemm';
        const lhs = tf.zeros([5, 3]) as tf.Tensor2D;
        const rhs = tf.zeros([2, 3, 4]) as tf.Tensor3D;
        const offsets = tf.tensor1d([0, 2, 5], 'int32');
        const extra = [tf.zeros([5, 3, 1]), tf.zeros([3, 4]), tf.zeros([5, 4]), tf.tensor1d([0, 2, 5]),
          tf.tensor1d([0, 1, 2, 5], 'int32'), tf.zeros([1, 3], 'int32'), tf.zeros([2, 5]), tf.zeros([2, 4], 'int32'),
          tf.zeros([4]), tf.zeros([5, 3], 'int32')];
        rejects(op, 'lhs', () => batchedGemm(bad(extra[0]), rhs, offsets));
        rejects(op, 'lhs', () => batchedGemm(bad(extra[9]), rhs, offsets));
        rejects(op, 'lhs', () => batchedGemm(bad(extra[2]), rhs, offsets));   // K = 4 != 3
        rejects(op, 'lhs', () => batchedGemm(lhs, rhs, offsets, {transposeRhs: true}));  // [E,N,K] has K = 4
        rejects(op, 'rhs', () => batchedGemm(lhs, bad(extra[1]), offsets));
        rejects(op, 'segments', () => batchedGemm(lhs, rhs, bad([0, 2, 5])));
        rejects(op, 'segments', () => batchedGemm(lhs, rhs, bad(extra[3])));  // float32
        rejects(op, 'segments', () => batchedGemm(lhs, rhs, bad(extra[4])));  // length E+2
        rejects(op, 'segments', () => batchedGemm(lhs, rhs, bad(extra[5])));  // rank 2
        rejects(op, 'options.bias', () => batchedGemm(lhs, rhs, offsets, {bias: bad(extra[6])}));
        rejects(op, 'options.bias', () => batchedGemm(lhs, rhs, offsets, {bias: bad(extra[7])}));
        rejects(op, 'options.bias', () => batchedGemm(lhs, rhs, offsets, {bias: bad(extra[8])}));
        rejects(op, 'options.transposeRhs', () => batchedGemm(lhs, rhs, offsets, {transposeRhs: bad('no')}));
        rejects(op, 'options', () => batchedGemm(lhs, rhs, offsets, bad({transposeRHS: true})));
        rejects(op, 'options', () => batchedGemm(lhs, rhs, offsets, bad(7)));
        tf.dispose([lhs, rhs, offsets, ...extra]);
      });
    });

    it('fusedSwigluScale names the argument', async () => {
      await expectNoLeak(() => {
        const op = 'fusedSwigluScale';
        const x = tf.zeros([3, 4]) as tf.Tensor2D;
        const extra = [tf.zeros([12]), tf.zeros([3, 5]), tf.zeros([3, 4], 'int32'), tf.zeros([4]), tf.zeros([3, 1])];
        rejects(op, 'x', () => fusedSwigluScale(bad(extra[0])));
        rejects(op, 'x', () => fusedSwigluScale(bad(extra[1])));   // odd last dim
        rejects(op, 'x', () => fusedSwigluScale(bad(extra[2])));
        rejects(op, 'x', () => fusedSwigluScale(bad([[1, 2]])));
        rejects(op, 'scale', () => fusedSwigluScale(x, bad(extra[3])));  // [R+1]
        rejects(op, 'scale', () => fusedSwigluScale(x, bad(extra[4])));  // rank 2
        rejects(op, 'scale', () => fusedSwigluScale(x, bad([1, 1, 1])));
        tf.dispose([x, ...extra]);
      });
    });

    it('moeCombine names the argument', async () => {
      await expectNoLeak(() => {
        const op = 'moeCombine';
        const y = tf.zeros([6, 4]) as tf.Tensor2D;
        const rowMap = tf.tensor2d([0, 1, 2, 3, 4, 5], [3, 2], 'int32');
        const weights = tf.zeros([3, 2]) as tf.Tensor2D;
        const ids = tf.tensor2d([0, 1, 1, 2, 2, 0], [3, 2], 'int32');
        const extra = [tf.zeros([24]), tf.zeros([3, 2]), tf.zeros([3, 1]), tf.zeros([3, 2, 1]), tf.zeros([2, 2], 'int32'),
          tf.zeros([3, 5]), tf.zeros([3, 4], 'int32'), tf.zeros([6, 4], 'int32')];
        rejects(op, 'y', () => moeCombine(bad(extra[0]), rowMap, weights, ids));
        rejects(op, 'y', () => moeCombine(bad(extra[7]), rowMap, weights, ids));
        rejects(op, 'rowMap', () => moeCombine(y, bad(extra[1]), weights, ids));   // float rowMap
        rejects(op, 'rowMap', () => moeCombine(y, bad([[0, 1]]), weights, ids));
        rejects(op, 'topkWeights', () => moeCombine(y, rowMap, bad(extra[2]), ids));  // [T,1] vs [T,k]
        rejects(op, 'topkWeights', () => moeCombine(y, rowMap, bad(extra[3]), ids));
        rejects(op, 'topkIds', () => moeCombine(y, rowMap, weights, bad(extra[4])));  // [2,2] vs [3,2]
        rejects(op, 'topkIds', () => moeCombine(y, rowMap, weights, bad(extra[1])));  // float ids
        rejects(op, 'options.downProjBias', () => moeCombine(y, rowMap, weights, ids, {downProjBias: bad(extra[5])}));
        rejects(op, 'options.downProjBias', () => moeCombine(y, rowMap, weights, ids, {downProjBias: bad(extra[6])}));
        rejects(op, 'options.weightsApplied', () => moeCombine(y, rowMap, weights, ids, {weightsApplied: bad(1)}));
        rejects(op, 'options', () => moeCombine(y, rowMap, weights, ids, bad({bias: null})));
        tf.dispose([y, rowMap, weights, ids, ...extra]);
      });
    });
  });

  if (ctx.opts.backend === 'cpu' && !ctx.opts.composite) describeCpuDataChecks(ctx);
}

/** Data errors only the cpu kernels can see without a device read (GPU paths only must not write out of bounds). */
function describeCpuDataChecks(ctx: ConformanceContext): void {
  const rejects = (op: string, arg: string, fn: () => unknown) =>
      expectThrowsNoLeak(() => ctx.call(fn), new RegExp(`${op}.*${arg}`));

  describe('cpu kernel data checks', () => {
    it('moePermute rejects ids outside [0, numExperts)', async () => {
      await expectNoLeak(() => {
        const x = tf.zeros([2, 3]) as tf.Tensor2D;
        const high = tf.tensor2d([0, 4, 1, 2], [2, 2], 'int32');
        const negative = tf.tensor2d([0, 1, -1, 2], [2, 2], 'int32');
        rejects('moePermute', 'topkIds', () => moePermute(x, high, 4));
        rejects('moePermute', 'topkIds', () => moePermute(x, negative, 4, 2));
        tf.dispose([x, high, negative]);
      });
    });

    it('moeCombine rejects rows outside [0,R) and ids outside the bias experts', async () => {
      await expectNoLeak(() => {
        const y = tf.zeros([4, 2]) as tf.Tensor2D;
        const rowMap = tf.tensor2d([0, 1, 2, 3], [2, 2], 'int32');
        const badRows = tf.tensor2d([0, 1, 4, 3], [2, 2], 'int32');
        const negRows = tf.tensor2d([0, -1, 2, 3], [2, 2], 'int32');
        const weights = tf.ones([2, 2]) as tf.Tensor2D;
        const ids = tf.tensor2d([0, 1, 1, 2], [2, 2], 'int32');
        const badIds = tf.tensor2d([0, 3, 1, 2], [2, 2], 'int32');
        const bias = tf.zeros([3, 2]) as tf.Tensor2D;
        rejects('moeCombine', 'rowMap', () => moeCombine(y, badRows, weights, ids));
        rejects('moeCombine', 'rowMap', () => moeCombine(y, negRows, weights, ids));
        rejects('moeCombine', 'topkIds', () => moeCombine(y, rowMap, weights, badIds, {downProjBias: bias}));
        tf.dispose([y, rowMap, badRows, negRows, weights, ids, badIds, bias]);
      });
    });

    it('batchedGemm rejects decreasing offsets, offsets past R and counts summing past R', async () => {
      await expectNoLeak(() => {
        const lhs = tf.zeros([5, 3]) as tf.Tensor2D;
        const rhs = tf.zeros([2, 3, 4]) as tf.Tensor3D;
        const segs = [tf.tensor1d([0, 3, 2], 'int32'), tf.tensor1d([0, 2, 6], 'int32'), tf.tensor1d([3, 3], 'int32'),
          tf.tensor1d([-1, 2], 'int32'), tf.tensor1d([-1, 2, 5], 'int32')];
        for (const seg of segs) rejects('batchedGemm', 'segments', () => batchedGemm(lhs, rhs, seg as tf.Tensor1D));
        tf.dispose([lhs, rhs, ...segs]);
      });
    });
  });
}
