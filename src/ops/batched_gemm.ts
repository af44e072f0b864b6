import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';
import type {NamedAttrMap} from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';

import {isQuantizedExpertWeights, QuantizedExpertWeights} from '../executor/expert_weights.js';
import {batchedGemmComposite} from '../kernels/composite/batched_gemm_composite.js';
import {batchedGemmQuantizedComposite} from '../kernels/composite/quantized_composite.js';
import type {ExpertWeightLayout} from '../kernels/expert_weight_formats.js';
import {BatchedGemm, BatchedGemmAttrs} from '../kernels/kernel_names.js';
import {BatchedGemmQuantized, ExpertWeightInputs} from '../kernels/kernel_names_quantized.js';
import {runWithGradient, zeroGrad} from '../gradients/kernel_grad.js';
import {batchedGemmWeightGrad} from './batched_gemm_weight_grad.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount} from './limits.js';
import {checkQuantizedExpertWeights, dequantizeExpertWeights, layoutAttrs, presentInputs} from './quantize_expert_weights.js';
import {argError, checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'batchedGemm';

/** Options of {@link batchedGemm}. */
export interface BatchedGemmOptions {
  /** rhs is [E,N,K] (torch Linear layout, out x in) instead of [E,K,N]. */
  transposeRhs?: boolean;
  /** float32 [E,N], added to every row of expert e's segment. */
  bias?: Tensor2D | null;
}

/** The packed rhs of a grouped GEMM: its layout and tensors (docs/formats.md). */
export interface PackedGemmRhs {
  q: QuantizedExpertWeights;
  layout: ExpertWeightLayout;
  inputs: Record<keyof ExpertWeightInputs, Tensor | undefined>;
}

/** The checked operands of a grouped GEMM (batchedGemm and batchedGemmSwiglu share them). */
export interface GemmOperands {
  lhs: Tensor2D;
  /** The float32 rhs (a 'float32' QuantizedExpertWeights gives its values tensor); null when packed. */
  rhs: Tensor3D | null;
  /** A packed rhs (any format but 'float32'), else null. */
  packed: PackedGemmRhs | null;
  segments: Tensor1D;
  bias: Tensor2D | null;
  /** N, the product's width. */
  width: number;
  attrs: BatchedGemmAttrs;
  options: Record<string, unknown>;
}

/**
 * Validates lhs, rhs (a float32 tensor or a QuantizedExpertWeights), segments and the options {transposeRhs, bias,
 * ...extraKeys} of a grouped GEMM op.
 */
export function checkGemmOperands(op: string, lhs: unknown, rhs: unknown, segments: unknown, options: unknown,
                                  extraKeys: string[] = []): GemmOperands {
  const $lhs = checkTensor(op, 'lhs', lhs, 2, 'float32', '[R,K]') as Tensor2D;
  let packed: PackedGemmRhs | null = null;
  let $rhs: Tensor3D | null = null;
  if (isQuantizedExpertWeights(rhs)) {
    const {layout, inputs} = checkQuantizedExpertWeights(op, 'rhs', rhs);
    if (layout.format === 'float32') $rhs = inputs.values as Tensor3D;
    else packed = {q: rhs, layout, inputs};
  } else {
    $rhs = checkTensor(op, 'rhs', rhs, 3, 'float32',
                       '[E,K,N] (or [E,N,K] with transposeRhs), or a QuantizedExpertWeights') as Tensor3D;
  }
  const rhsShape = $rhs != null ? $rhs.shape : packed!.q.shape;
  const opts = checkOptions(op, 'options', options, ['transposeRhs', 'bias', ...extraKeys]);
  const transposeRhs = opts.transposeRhs == null ? false : checkBoolean(op, 'options.transposeRhs', opts.transposeRhs);
  if (packed != null && transposeRhs !== packed.layout.transposed) {
    throw argError(op, 'options.transposeRhs', `${packed.layout.transposed} for rhs quantized in the ` +
        `${packed.layout.transposed ? '[E,N,K]' : '[E,K,N]'} layout (rhs.transposed)`, String(transposeRhs));
  }
  const [numExperts, rhsRows, rhsCols] = rhsShape;
  const [k, n] = transposeRhs ? [rhsCols, rhsRows] : [rhsRows, rhsCols];
  checkExpertCount(op, 'rhs', numExperts);
  checkElementCount(op, 'the output', [$lhs.shape[0], n]);
  if ($lhs.shape[1] !== k) {
    throw argError(op, 'lhs', `[R,K] with K = ${k} to match rhs ${transposeRhs ? '[E,N,K]' : '[E,K,N]'} ` +
        `of shape [${rhsShape.join(',')}]`, `shape [${$lhs.shape.join(',')}]`);
  }
  const $segments = checkTensor(op, 'segments', segments, 1, 'int32', '[E+1] (expertOffsets) or [E] (tokensPerExpert)');
  if ($segments.shape[0] !== numExperts + 1 && $segments.shape[0] !== numExperts) {
    throw argError(op, 'segments', `of length E+1 = ${numExperts + 1} (expertOffsets) or E = ${numExperts} ` +
        '(tokensPerExpert)', `length ${$segments.shape[0]}`);
  }
  const bias = checkOptionalTensor(op, 'options.bias', opts.bias, 2, 'float32', '[E,N]') as Tensor2D | null;
  if (bias != null) checkShape(op, 'options.bias', bias, [numExperts, n], '[E,N]');
  return {
    lhs: $lhs, rhs: $rhs, packed, segments: $segments as Tensor1D, bias, width: n, options: opts,
    attrs: {transposeRhs, segmentsAreOffsets: $segments.shape[0] === numExperts + 1},
  };
}

/** The kernel inputs of a grouped GEMM (optional inputs omitted when absent; a packed rhs as its tensors). */
export function gemmInputs(g: GemmOperands): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = g.packed != null ?
      {...presentInputs(g.packed.inputs), lhs: g.lhs, segments: g.segments} : {lhs: g.lhs, rhs: g.rhs!, segments: g.segments};
  if (g.bias != null) inputs.bias = g.bias;
  return inputs;
}

/** The kernel attrs of a packed-rhs GEMM (BatchedGemmQuantizedAttrs). */
export function packedGemmAttrs(g: GemmOperands): NamedAttrMap {
  return {...layoutAttrs(g.packed!.layout), segmentsAreOffsets: g.attrs.segmentsAreOffsets};
}

/** The product over a packed rhs on the composite path (experts dequantized range by range). */
export function packedGemmComposite(g: GemmOperands, bias: Tensor2D | null = g.bias): Tensor2D {
  const {layout, inputs} = g.packed!;
  return batchedGemmQuantizedComposite(g.lhs, layout, inputs.values!, inputs.scales ?? null,
                                       inputs.zeroPoints ?? null, g.segments, bias, g.attrs.segmentsAreOffsets);
}

/**
 * Runs a packed-rhs kernel call so that lhs, bias (and the extra inputs) get gradients, never the packed weights
 * (quantized expert weights are not trained). The backward pass dequantizes the weights (float32, training only)
 * and differentiates the float op with `floatGrads`.
 */
export function runPackedWithGradient(
    g: GemmOperands, extra: Tensor[], run: () => Tensor2D,
    floatGrads: (dy: Tensor2D, lhs: Tensor2D, w: Tensor3D, segments: Tensor1D, bias: Tensor2D | null, extra: Tensor[]) =>
        Tensor[]):
    Tensor2D {
  const order: Tensor[] = [g.lhs, g.segments, ...(g.bias != null ? [g.bias] : []), ...extra];
  return runWithGradient(order, run, (dy, saved) => {
    const [l, s] = saved as [Tensor2D, Tensor1D];
    const b = g.bias != null ? saved[2] as Tensor2D : null;
    const w = dequantizeExpertWeights(g.packed!.q);
    try {
      const grads = floatGrads(dy, l, w, s, b, saved.slice(g.bias != null ? 3 : 2));
      return [grads[0], zeroGrad(s), ...grads.slice(1)];
    } finally {
      w.dispose();
    }
  });
}

/**
 * Grouped GEMM over contiguous row segments (docs/semantics.md section 4): out[r] = lhs[r] @ rhs[e] (+ bias[e]) for r
 * in expert e's segment; rows in no segment are 0. `segments` is a device tensor, never a JS array: int32
 * expertOffsets [E+1] or tokensPerExpert [E] (then segments are packed back to back from row 0).
 */
export function batchedGemm(lhs: Tensor2D, rhs: Tensor3D | QuantizedExpertWeights, segments: Tensor1D,
                            options: BatchedGemmOptions = {}): Tensor2D {
  const g = checkGemmOperands(OP, lhs, rhs, segments, options);
  if (g.packed == null) {
    return runMoeKernel(BatchedGemm, gemmInputs(g), g.attrs,
                        () => batchedGemmComposite(g.lhs, g.rhs!, g.segments, g.bias, g.attrs));
  }
  const run = () => runMoeKernel(BatchedGemmQuantized, gemmInputs(g), packedGemmAttrs(g), () => packedGemmComposite(g));
  return runPackedWithGradient(g, [], run, (dy, l, w, s, b) => tf.tidy(() => {
    const {transposeRhs} = g.attrs;
    const grads: Tensor[] = [batchedGemm(dy, w, s, {transposeRhs: !transposeRhs})];
    if (b != null) {
      const numExperts = w.shape[0];
      grads.push(tf.reshape(batchedGemmWeightGrad(tf.ones([l.shape[0], 1]), dy, s, numExperts),
                            [numExperts, dy.shape[1]]));
    }
    return grads;
  }));
}
