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
import type {GradSaveFunc, Tensor} from '@tensorflow/tfjs-core';

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
