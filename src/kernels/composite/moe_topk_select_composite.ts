import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';
import type {MoeTopkSelectAttrs} from '../kernel_names.js';

/** Returns [topkIds int32 [T,k], topkWeights float32 [T,k]]. */
export function moeTopkSelectComposite(
    gatingLogits: Tensor2D, bias: Tensor1D | null, attrs: MoeTopkSelectAttrs): [Tensor2D, Tensor2D] {
  throw new Error('not implemented');
}
