import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {batchedGemmComposite} from '../kernels/composite/batched_gemm_composite.js';
import {BatchedGemm, BatchedGemmAttrs} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {argError, checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'batchedGemm';

/** Options of {@link batchedGemm}. */
export interface BatchedGemmOptions {
  /** rhs is [E,N,K] (torch Linear layout, out x in) instead of [E,K,N]. */
  transposeRhs?: boolean;
  /** float32 [E,N], added to every row of expert e's segment. */
  bias?: Tensor2D | null;
}

/**
 * Grouped GEMM over contiguous row segments (semantics doc section 4): out[r] = lhs[r] @ rhs[e] (+ bias[e]) for r
 * in expert e's segment; rows in no segment are 0. `segments` is a device tensor, never a JS array: int32
 * expertOffsets [E+1] or tokensPerExpert [E] (then segments are packed back to back from row 0).
 */
export function batchedGemm(lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, options: BatchedGemmOptions = {}):
    Tensor2D {
  const $lhs = checkTensor(OP, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  const $rhs = checkTensor(OP, 'rhs', rhs, 3, 'float32', '[E,K,N] (or [E,N,K] with transposeRhs)') as Tensor3D;
  const opts = checkOptions(OP, 'options', options, ['transposeRhs', 'bias']);
  const transposeRhs = opts.transposeRhs == null ? false : checkBoolean(OP, 'options.transposeRhs', opts.transposeRhs);
  const [numExperts, rhsRows, rhsCols] = $rhs.shape;
  const [k, n] = transposeRhs ? [rhsCols, rhsRows] : [rhsRows, rhsCols];
  if ($lhs.shape[1] !== k) {
    throw argError(OP, 'lhs', `[R,K] with K = ${k} to match rhs ${transposeRhs ? '[E,N,K]' : '[E,K,N]'} ` +
        `of shape [${$rhs.shape.join(',')}]`, `shape [${$lhs.shape.join(',')}]`);
  }
  const $segments = checkTensor(OP, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(OP, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const bias = checkOptionalTensor(OP, 'options.bias', opts.bias, 2, 'float32', '[E,N]') as Tensor2D | null;
  if (bias != null) checkShape(OP, 'options.bias', bias, [numExperts, n], '[E,N]');

  const attrs: BatchedGemmAttrs = {transposeRhs, segmentsAreOffsets: $segments.shape[0] === numExperts + 1};
  const inputs: Record<string, Tensor> = {lhs: $lhs, rhs: $rhs, segments: $segments};
  if (bias != null) inputs.bias = bias;
  return runMoeKernel(
      BatchedGemm, inputs, attrs, () => batchedGemmComposite($lhs, $rhs, $segments as Tensor1D, bias, attrs));
}
