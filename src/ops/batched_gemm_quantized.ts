/**
 * batchedGemm with packed expert weights as rhs (docs/formats.md): the result is batchedGemm over
 * dequantizeExpertWeights(rhs) with float32 (or better) accumulation, without materialising the float32 weights.
 * batchedGemm itself accepts a QuantizedExpertWeights through this op.
 */
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {batchedGemmQuantizedComposite} from '../kernels/composite/quantized_composite.js';
import type {MoeKernelName} from '../kernels/kernel_names.js';
import {BatchedGemmQuantized, BatchedGemmQuantizedAttrs} from '../kernels/kernel_names_quantized.js';
import type {BatchedGemmOptions} from './batched_gemm.js';
import {runMoeKernel} from './dispatch.js';
import {checkQuantizedExpertWeights, layoutAttrs, presentInputs, QuantizedExpertWeights} from './quantize_expert_weights.js';
import {argError, checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'batchedGemm';

export function batchedGemmQuantized(
    lhs: Tensor2D, rhs: QuantizedExpertWeights, segments: Tensor1D, options: BatchedGemmOptions = {}): Tensor2D {
  const $lhs = checkTensor(OP, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  const {layout, inputs} = checkQuantizedExpertWeights(OP, 'rhs', rhs);
  const opts = checkOptions(OP, 'options', options, ['transposeRhs', 'bias']);
  const transposeRhs = opts.transposeRhs == null ? false : checkBoolean(OP, 'options.transposeRhs', opts.transposeRhs);
  if (transposeRhs !== layout.transposed) {
    throw argError(OP, 'options.transposeRhs', `${layout.transposed} for rhs quantized in the ` +
        `${layout.transposed ? '[E,N,K]' : '[E,K,N]'} layout (rhs.transposed)`, String(transposeRhs));
  }
  const {numExperts, depth: k, width: n} = layout;
  if ($lhs.shape[1] !== k) {
    throw argError(OP, 'lhs', `[R,K] with K = ${k} to match rhs of shape [${rhs.shape.join(',')}]` +
        `${transposeRhs ? ' ([E,N,K])' : ''}`, `shape [${$lhs.shape.join(',')}]`);
  }
  const $segments = checkTensor(OP, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(OP, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const bias = checkOptionalTensor(OP, 'options.bias', opts.bias, 2, 'float32', '[E,N]') as Tensor2D | null;
  if (bias != null) checkShape(OP, 'options.bias', bias, [numExperts, n], '[E,N]');
  const segmentsAreOffsets = $segments.shape[0] === numExperts + 1;
  const attrs: BatchedGemmQuantizedAttrs = {...layoutAttrs(layout), segmentsAreOffsets};
  const kernelInputs: Record<string, Tensor> = {...presentInputs(inputs), lhs: $lhs, segments: $segments};
  if (bias != null) kernelInputs.bias = bias;
  return runMoeKernel(BatchedGemmQuantized as unknown as MoeKernelName, kernelInputs, attrs, () =>
      batchedGemmQuantizedComposite($lhs, layout, inputs.values!, inputs.scales ?? null, inputs.zeroPoints ?? null,
                                    $segments as Tensor1D, bias, segmentsAreOffsets));
}
