/**
 * batchedGemm with packed expert weights as rhs (docs/formats.md): the result is batchedGemm over
 * dequantizeExpertWeights(rhs) with float32 (or better) accumulation, without materialising the float32 weights.
 * batchedGemm itself accepts a QuantizedExpertWeights through this op.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {fusedSwigluScaleComposite} from '../kernels/composite/fused_swiglu_scale_composite.js';
import {batchedGemmQuantizedComposite} from '../kernels/composite/quantized_composite.js';
import type {MoeKernelName} from '../kernels/kernel_names.js';
import {BatchedGemmQuantized, BatchedGemmQuantizedAttrs, BatchedGemmSwigluQuantized} from '../kernels/kernel_names_quantized.js';
import type {BatchedGemmOptions} from './batched_gemm.js';
import {runMoeKernel} from './dispatch.js';
import {checkQuantizedExpertWeights, layoutAttrs, presentInputs, QuantizedExpertWeights} from './quantize_expert_weights.js';
import {argError, checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

/** Checks batchedGemm's arguments with a packed rhs; returns runKernel's inputs and attrs. */
function checkArgs(op: string, lhs: Tensor2D, rhs: QuantizedExpertWeights, segments: Tensor1D,
                   opts: Record<string, unknown>) {
  const $lhs = checkTensor(op, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  const {layout, inputs} = checkQuantizedExpertWeights(op, 'rhs', rhs);
  const transposeRhs = opts.transposeRhs == null ? false : checkBoolean(op, 'options.transposeRhs', opts.transposeRhs);
  if (transposeRhs !== layout.transposed) {
    throw argError(op, 'options.transposeRhs', `${layout.transposed} for rhs quantized in the ` +
        `${layout.transposed ? '[E,N,K]' : '[E,K,N]'} layout (rhs.transposed)`, String(transposeRhs));
  }
  const {numExperts, depth: k, width: n} = layout;
  if ($lhs.shape[1] !== k) {
    throw argError(op, 'lhs', `[R,K] with K = ${k} to match rhs of shape [${rhs.shape.join(',')}]` +
        `${transposeRhs ? ' ([E,N,K])' : ''}`, `shape [${$lhs.shape.join(',')}]`);
  }
  const $segments = checkTensor(op, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(op, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const bias = checkOptionalTensor(op, 'options.bias', opts.bias, 2, 'float32', '[E,N]') as Tensor2D | null;
  if (bias != null) checkShape(op, 'options.bias', bias, [numExperts, n], '[E,N]');
  const segmentsAreOffsets = $segments.shape[0] === numExperts + 1;
  const attrs: BatchedGemmQuantizedAttrs = {...layoutAttrs(layout), segmentsAreOffsets};
  const kernelInputs: Record<string, Tensor> = {...presentInputs(inputs), lhs: $lhs, segments: $segments};
  if (bias != null) kernelInputs.bias = bias;
  const composite = () => batchedGemmQuantizedComposite(
      $lhs, layout, inputs.values!, inputs.scales ?? null, inputs.zeroPoints ?? null, $segments as Tensor1D, bias,
      segmentsAreOffsets);
  return {lhs: $lhs, layout, attrs, kernelInputs, composite};
}

export function batchedGemmQuantized(
    lhs: Tensor2D, rhs: QuantizedExpertWeights, segments: Tensor1D, options: BatchedGemmOptions = {}): Tensor2D {
  const opts = checkOptions('batchedGemm', 'options', options, ['transposeRhs', 'bias']);
  const {attrs, kernelInputs, composite} = checkArgs('batchedGemm', lhs, rhs, segments, opts);
  return runMoeKernel(BatchedGemmQuantized as unknown as MoeKernelName, kernelInputs, attrs, composite);
}

export interface BatchedGemmSwigluQuantizedOptions extends BatchedGemmOptions {
  /** float32 [R]: multiplies each row's output (probInAdvance row weights). */
  scale?: Tensor1D | null;
}

/**
 * fusedSwigluScale(batchedGemm(lhs, rhs, segments, {transposeRhs, bias}), scale) with a packed rhs of width N = 2I
 * (gate columns first), as one kernel.
 */
export function batchedGemmSwigluQuantized(
    lhs: Tensor2D, rhs: QuantizedExpertWeights, segments: Tensor1D, options: BatchedGemmSwigluQuantizedOptions = {}):
    Tensor2D {
  const op = 'batchedGemmSwiglu';
  const opts = checkOptions(op, 'options', options, ['transposeRhs', 'bias', 'scale']);
  const {lhs: $lhs, layout, attrs, kernelInputs, composite} = checkArgs(op, lhs, rhs, segments, opts);
  if (layout.width % 2 !== 0) {
    throw argError(op, 'rhs', 'of even width N = 2I (gate columns, then up)', `N = ${layout.width}`);
  }
  const scale = checkOptionalTensor(op, 'options.scale', opts.scale, 1, 'float32', '[R]') as Tensor1D | null;
  if (scale != null) checkShape(op, 'options.scale', scale, [$lhs.shape[0]], '[R]');
  if (scale != null) kernelInputs.scale = scale;
  return runMoeKernel(BatchedGemmSwigluQuantized as unknown as MoeKernelName, kernelInputs, attrs, () => tf.tidy(() => {
    const product = composite();
    return fusedSwigluScaleComposite(product, scale);
  }));
}
