import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';
import type {MoePermuteAttrs} from '../kernel_names.js';

/** Returns [permutedX [R,D], tokensPerExpert int32 [E], expertOffsets int32 [E+1], rowMap int32 [T,k]]. */
export function moePermuteComposite(
    x: Tensor2D, topkIds: Tensor2D, attrs: MoePermuteAttrs): [Tensor2D, Tensor1D, Tensor1D, Tensor2D] {
  throw new Error('not implemented');
}
