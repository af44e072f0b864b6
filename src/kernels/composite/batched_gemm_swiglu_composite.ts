import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {BatchedGemmSwigluAttrs} from '../kernel_names.js';
import {batchedGemmComposite} from './batched_gemm_composite.js';
import {fusedSwigluScaleComposite} from './fused_swiglu_scale_composite.js';

/** Returns float32 [R,I] (docs/semantics.md section 5a): the two composite paths, one after the other. */
export function batchedGemmSwigluComposite(lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, bias: Tensor2D | null,
                                           scale: Tensor1D | null, attrs: BatchedGemmSwigluAttrs): Tensor2D {
  return tf.tidy(() => fusedSwigluScaleComposite(batchedGemmComposite(lhs, rhs, segments, bias, attrs), scale, attrs));
}
