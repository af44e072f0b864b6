import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';
import type {BatchedGemmAttrs} from '../kernel_names.js';

/** Returns float32 [R,N]. */
export function batchedGemmComposite(
    lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, bias: Tensor2D | null, attrs: BatchedGemmAttrs): Tensor2D {
  throw new Error('not implemented');
}
