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
import type {GradSaveFunc, Tensor, Tensor2D} from '@tensorflow/tfjs-core';

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

/**
 * index where keep, else `other`, by int32 arithmetic (tf.where's scalar broadcast runs Tile, which reads back on
 * webgpu).
 */
export function keptOr(index: Tensor, keep: Tensor, other: number): Tensor {
  const k = tf.cast(keep, 'int32');
  return tf.add(tf.mul(index, k), tf.mul(tf.sub(tf.scalar(1, 'int32'), k), tf.scalar(other, 'int32')));
}

/** rows [n,D] with the rows where keep [n] is false set to 0 (a NaN there too): a full-shape select, no Tile. */
export function zeroRowsOf(rows: Tensor2D, keep: Tensor): Tensor2D {
  const full = tf.greater(tf.add(tf.reshape(tf.cast(keep, 'float32'), [-1, 1]), tf.zeros([1, rows.shape[1]])),
      tf.scalar(0.5));
  return tf.where(full, rows, tf.zerosLike(rows)) as Tensor2D;
}
