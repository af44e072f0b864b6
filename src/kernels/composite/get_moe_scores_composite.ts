import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';
import type {GetMoeScoresAttrs} from '../kernel_names.js';

/** Returns [scores float32 [T,E], topkWeights float32 [T,k], topkIds int32 [T,k]]. */
export function getMoeScoresComposite(
    gatingOutput: Tensor2D, bias: Tensor1D | null, attrs: GetMoeScoresAttrs): [Tensor2D, Tensor2D, Tensor2D] {
  throw new Error('not implemented');
}
