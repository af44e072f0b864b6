import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {batchedGemmComposite} from '../kernels/composite/batched_gemm_composite.js';
import {BatchedGemm, BatchedGemmAttrs} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount} from './limits.js';
import {argError, checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'batchedGemm';

/** Options of {@link batchedGemm}. */
export interface BatchedGemmOptions {
  /** rhs is [E,N,K] (torch Linear layout, out x in) instead of [E,K,N]. */
  transposeRhs?: boolean;
  /** float32 [E,N], added to every row of expert e's segment. */
  bias?: Tensor2D | null;
}

/** The checked operands of a grouped GEMM (batchedGemm and batchedGemmSwiglu share them). */
export interface GemmOperands {
  lhs: Tensor2D;
  rhs: Tensor3D;
  segments: Tensor1D;
  bias: Tensor2D | null;
  /** N, the product's width. */
  width: number;
  attrs: BatchedGemmAttrs;
  options: Record<string, unknown>;
}

/** Validates lhs, rhs, segments and the options {transposeRhs, bias, ...extraKeys} of a grouped GEMM op. */
export function checkGemmOperands(op: string, lhs: unknown, rhs: unknown, segments: unknown, options: unknown,
                                  extraKeys: string[] = []): GemmOperands {
  const $lhs = checkTensor(op, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  const $rhs = checkTensor(op, 'rhs', rhs, 3, 'float32', '[E,K,N] (or [E,N,K] with transposeRhs)') as Tensor3D;
  const opts = checkOptions(op, 'options', options, ['transposeRhs', 'bias', ...extraKeys]);
  const transposeRhs = opts.transposeRhs == null ? false : checkBoolean(op, 'options.transposeRhs', opts.transposeRhs);
  const [numExperts, rhsRows, rhsCols] = $rhs.shape;
  const [k, n] = transposeRhs ? [rhsCols, rhsRows] : [rhsRows, rhsCols];
  checkExpertCount(op, 'rhs', numExperts);
  checkElementCount(op, 'the output', [$lhs.shape[0], n]);
  if ($lhs.shape[1] !== k) {
    throw argError(op, 'lhs', `[R,K] with K = ${k} to match rhs ${transposeRhs ? '[E,N,K]' : '[E,K,N]'} ` +
        `of shape [${$rhs.shape.join(',')}]`, `shape [${$lhs.shape.join(',')}]`);
  }
  const $segments = checkTensor(op, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(op, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const bias = checkOptionalTensor(op, 'options.bias', opts.bias, 2, 'float32', '[E,N]') as Tensor2D | null;
  if (bias != null) checkShape(op, 'options.bias', bias, [numExperts, n], '[E,N]');
  return {
    lhs: $lhs, rhs: $rhs, segments: $segments as Tensor1D, bias, width: n, options: opts,
    attrs: {transposeRhs, segmentsAreOffsets: $segments.shape[0] === numExperts + 1},
  };
}

/** The kernel inputs of a grouped GEMM (optional inputs omitted when absent). */
export function gemmInputs(g: GemmOperands): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = {lhs: g.lhs, rhs: g.rhs, segments: g.segments};
  if (g.bias != null) inputs.bias = g.bias;
  return inputs;
}

/**
 * Grouped GEMM over contiguous row segments (docs/semantics.md section 4): out[r] = lhs[r] @ rhs[e] (+ bias[e]) for r
 * in expert e's segment; rows in no segment are 0. `segments` is a device tensor, never a JS array: int32
 * expertOffsets [E+1] or tokensPerExpert [E] (then segments are packed back to back from row 0).
 */
export function batchedGemm(lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, options: BatchedGemmOptions = {}):
    Tensor2D {
  const g = checkGemmOperands(OP, lhs, rhs, segments, options);
  return runMoeKernel(BatchedGemm, gemmInputs(g), g.attrs,
                      () => batchedGemmComposite(g.lhs, g.rhs, g.segments, g.bias, g.attrs));
}
