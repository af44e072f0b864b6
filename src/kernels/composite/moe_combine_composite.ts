import type {Tensor2D} from '@tensorflow/tfjs-core';
import type {MoeCombineAttrs} from '../kernel_names.js';

/** Returns float32 [T,D]. */
export function moeCombineComposite(
    y: Tensor2D, rowMap: Tensor2D, topkWeights: Tensor2D, topkIds: Tensor2D, bias: Tensor2D | null,
    attrs: MoeCombineAttrs): Tensor2D {
  throw new Error('not implemented');
}
