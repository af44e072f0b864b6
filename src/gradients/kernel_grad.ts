/**
 * Gradient plumbing shared by the gradient modules.
 *
 * tfjs hands a registered gradient only the tensors named in inputsToSave, and an optional input cannot be named
 * there (tfjs clones every listed input, absent or not). Where a gradient needs an optional input's VALUE
 * (fusedSwigluScale's scale, moeCombine's downProjBias), the op instead runs its kernel call inside a customGrad
 * node whose gradient closes over every input: the pattern tfjs's own fused ops use. The registered gradient of
 * those kernels covers the calls without the optional input.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradSaveFunc, Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

/**
 * Runs `run` (a single-output kernel call on exactly `inputs`) so that its gradient is grad(dy, inputs), one
 * tensor per input in order. Only while a gradient tape records: otherwise `run` runs as is.
 */
export function runWithGradient<T extends Tensor>(
    inputs: Tensor[], run: () => T, grad: (dy: T, inputs: Tensor[]) => Tensor[]): T {
  if (!tf.engine().isTapeOn()) return run();
  const op = tf.customGrad((...args: Array<Tensor | GradSaveFunc>) => {
    const save = args[args.length - 1] as GradSaveFunc;
    save(args.slice(0, -1) as Tensor[]);
    return {value: run(), gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => grad(dy as T, saved)};
  });
  return op(...inputs) as T;
}

/** A float32 zero gradient for an input that is not differentiable (int32 ids, maps, offsets). */
export function zeroGrad(like: Tensor): Tensor {
  return tf.zeros(like.shape, 'float32');
}

/** index in [0, n), elementwise (bool). */
function validIndex(index: Tensor1D, n: number): Tensor {
  return tf.logicalAnd(tf.greaterEqual(index, tf.scalar(0, 'int32')), tf.less(index, tf.scalar(n, 'int32')));
}

/**
 * source[index[i]] [n,D] for index [n], with a zero row where index is outside [0, source.shape[0]): an invalid
 * rowMap entry or bias id adds nothing to the forward (docs/semantics.md sections 3 and 6), so it neither takes
 * nor gives gradient, and no backend's gather sees it.
 */
export function gatherRowsOrZero(source: Tensor2D, index: Tensor1D): Tensor2D {
  return tf.tidy(() => {
    const [numRows, width] = source.shape;
    if (numRows === 0) return tf.zeros([index.shape[0], width]) as Tensor2D;
    const valid = validIndex(index, numRows);
    const rows = tf.gather(source, tf.where(valid, index, tf.zerosLike(index)));
    return tf.where(tf.reshape(valid, [-1, 1]), rows, tf.zerosLike(rows)) as Tensor2D;
  });
}

/** unsortedSegmentSum of values [n,D] into numSegments rows, entries whose index is outside [0, numSegments) dropped. */
export function segmentSumValid(values: Tensor2D, index: Tensor1D, numSegments: number): Tensor2D {
  return tf.tidy(() => {
    // Invalid entries go to one extra segment, cut off after: no backend is asked to sum an out-of-range id.
    const segment = tf.where(validIndex(index, numSegments), index, tf.fill(index.shape, numSegments, 'int32'));
    return tf.slice(tf.unsortedSegmentSum(values, segment, numSegments + 1), 0, numSegments) as Tensor2D;
  });
}
