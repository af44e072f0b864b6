import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {batchedGemmWeightGradComposite} from '../kernels/composite/batched_gemm_weight_grad_composite.js';
import {BatchedGemmWeightGrad, BatchedGemmWeightGradAttrs} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, MAX_EXPERTS} from './limits.js';
import {argError, checkBoolean, checkInt, checkOptions, checkTensor} from './validate.js';

const OP = 'batchedGemmWeightGrad';

/** Options of {@link batchedGemmWeightGrad}. */
export interface BatchedGemmWeightGradOptions {
  /** Return [E,N,K] (the gradient of a batchedGemm with transposeRhs) instead of [E,K,N]. */
  transposeOut?: boolean;
}

/**
 * The segment-wise lhs^T @ dy that batchedGemm's weight gradient needs: out[e] = sum over rows r of expert e's
 * segment of lhs[r]^T dy[r], float32 [E,K,N] (or [E,N,K] with transposeOut). `segments` is the same device tensor
 * batchedGemm takes (expertOffsets [E+1] or tokensPerExpert [E]); numExperts is explicit because a segments
 * tensor of length n could mean either E = n - 1 offsets or E = n counts.
 */
export function batchedGemmWeightGrad(
    lhs: Tensor2D, dy: Tensor2D, segments: Tensor1D, numExperts: number,
    options: BatchedGemmWeightGradOptions = {}): Tensor3D {
  const $lhs = checkTensor(OP, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  const $dy = checkTensor(OP, 'dy', dy, 2, 'float32', '[R,N]') as Tensor2D;
  if ($dy.shape[0] !== $lhs.shape[0]) {
    throw argError(OP, 'dy', `[R,N] with R = ${$lhs.shape[0]} rows (as lhs)`, `shape [${$dy.shape.join(',')}]`);
  }
  checkInt(OP, 'numExperts', numExperts, 1, MAX_EXPERTS);
  checkElementCount(OP, 'the output', [numExperts, $lhs.shape[1], $dy.shape[1]]);
  const $segments = checkTensor(OP, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(OP, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const opts = checkOptions(OP, 'options', options, ['transposeOut']);
  const transposeOut = opts.transposeOut == null ? false : checkBoolean(OP, 'options.transposeOut', opts.transposeOut);

  const attrs: BatchedGemmWeightGradAttrs =
      {numExperts, transposeOut, segmentsAreOffsets: $segments.shape[0] === numExperts + 1};
  return runMoeKernel(BatchedGemmWeightGrad, {lhs: $lhs, dy: $dy, segments: $segments}, attrs,
      () => batchedGemmWeightGradComposite($lhs, $dy, $segments as Tensor1D, attrs));
}
