import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

/** Returns float32 [R,I]. */
export function fusedSwigluScaleComposite(x: Tensor2D, scale: Tensor1D | null): Tensor2D {
  throw new Error('not implemented');
}
