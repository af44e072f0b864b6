import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {QuantizedExpertWeights} from '../executor/expert_weights.js';
import {fusedSwigluScaleComposite} from '../kernels/composite/fused_swiglu_scale_composite.js';
import {BatchedGemmSwigluQuantized} from '../kernels/kernel_names_quantized.js';

import {batchedGemmSwigluComposite} from '../kernels/composite/batched_gemm_swiglu_composite.js';
import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs} from '../kernels/kernel_names.js';
import {batchedGemmSwigluGrads} from '../gradients/batched_gemm_swiglu_grad.js';
import {runWithGradient, zeroGrad} from '../gradients/kernel_grad.js';
import type {BatchedGemmOptions} from './batched_gemm.js';
import {batchedGemm, checkGemmOperands, gemmInputs, GemmOperands, packedGemmAttrs, packedGemmComposite, runPackedWithGradient} from
    './batched_gemm.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {fusedSwigluScale, SWIGLU_ACTIVATION_KEYS, SwigluActivationOptions} from './fused_swiglu_scale.js';
import {argError, checkOptionalTensor, checkShape, checkSwigluActivation} from './validate.js';

const OP = 'batchedGemmSwiglu';

export interface BatchedGemmSwigluOptions extends BatchedGemmOptions, SwigluActivationOptions {
  /** float32 [R]: each row's factor after SwiGLU (the routing weight when probInAdvance). */
  scale?: Tensor1D | null;
}

/**
 * The first expert GEMM with SwiGLU x scale fused (docs/semantics.md section 5a):
 * fusedSwigluScale(batchedGemm(lhs, rhs, segments, {transposeRhs, bias}), scale, {activation, ...}), float32 [R,I] for N = 2I
 * (gate columns first). Same inputs as batchedGemm; each backend decides whether it runs as one program.
 */
export function batchedGemmSwiglu(lhs: Tensor2D, rhs: Tensor3D | QuantizedExpertWeights, segments: Tensor1D,
                                  options: BatchedGemmSwigluOptions = {}): Tensor2D {
  const g = checkGemmOperands(OP, lhs, rhs, segments, options, ['scale', ...SWIGLU_ACTIVATION_KEYS]);
  if (g.width % 2 !== 0) {
    throw argError(OP, 'rhs', 'a weight with an even output width N = 2I (gate columns, then up columns)',
                   `shape [${(g.rhs ?? g.packed!.q).shape.join(',')}] (N = ${g.width})`);
  }
  const scale = checkOptionalTensor(OP, 'options.scale', g.options.scale, 1, 'float32', '[R]') as Tensor1D | null;
  if (scale != null) checkShape(OP, 'options.scale', scale, [g.lhs.shape[0]], '[R]');
  const attrs: BatchedGemmSwigluAttrs = {...g.attrs, ...checkSwigluActivation(OP, 'options.', g.options)};

  const inputs = gemmInputs(g);
  if (scale != null) inputs.scale = scale;
  if (g.packed != null) return packedSwiglu(g, inputs, scale, attrs);
  const rhsTensor = g.rhs!;
  const run = () => runMoeKernel(BatchedGemmSwiglu, inputs, attrs,
                                 () => batchedGemmSwigluComposite(g.lhs, rhsTensor, g.segments, g.bias, scale, attrs));
  if ((g.bias == null && scale == null) || !usesMoeKernel(BatchedGemmSwiglu)) return run();
  // Bias and scale are optional inputs, which a registered gradient cannot be handed (gradients/kernel_grad.ts).
  const order: Tensor[] = [g.lhs, rhsTensor, g.segments, ...(g.bias != null ? [g.bias] : []), ...(scale != null ? [scale] : [])];
  return runWithGradient(order, run, (dy, saved) => {
    const [l, r, s] = saved as [Tensor2D, Tensor3D, Tensor1D];
    const b = g.bias != null ? saved[3] as Tensor2D : null;
    const sc = scale != null ? saved[saved.length - 1] as Tensor1D : null;
    const grads = batchedGemmSwigluGrads(dy, l, r, s, b, sc, attrs);
    return [grads.lhs, grads.rhs, zeroGrad(s), ...(b != null ? [grads.bias!] : []), ...(sc != null ? [grads.scale!] : [])];
  });
}

/**
 * The packed-rhs kernel; its gradient reaches lhs, bias and scale (never the packed weights). The packed kernels
 * implement plain SwiGLU: another activation runs the packed GEMM, then fusedSwigluScale.
 */
function packedSwiglu(g: GemmOperands, inputs: Record<string, Tensor>, scale: Tensor1D | null,
                      attrs: BatchedGemmSwigluAttrs): Tensor2D {
  if (attrs.activation !== 'swiglu') {
    return tf.tidy(() => fusedSwigluScale(batchedGemm(g.lhs, g.packed!.q, g.segments,
        {transposeRhs: g.attrs.transposeRhs, bias: g.bias}), scale,
        {activation: attrs.activation, swigluAlpha: attrs.swigluAlpha, swigluLimit: attrs.swigluLimit}));
  }
  const run = () => runMoeKernel(BatchedGemmSwigluQuantized, inputs, packedGemmAttrs(g),
                                 () => tf.tidy(() => fusedSwigluScaleComposite(packedGemmComposite(g), scale)));
  return runPackedWithGradient(g, scale != null ? [scale] : [], run, (dy, l, w, s, b, extra) => {
    const grads = batchedGemmSwigluGrads(dy, l, w, s, b, extra[0] as Tensor1D ?? null, attrs);
    grads.rhs.dispose();
    return [grads.lhs, ...(grads.bias != null ? [grads.bias] : []), ...(grads.scale != null ? [grads.scale] : [])];
  });
}
