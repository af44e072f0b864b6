import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {batchedGemmSwigluComposite} from '../kernels/composite/batched_gemm_swiglu_composite.js';
import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs} from '../kernels/kernel_names.js';
import {batchedGemmSwigluGrads} from '../gradients/batched_gemm_swiglu_grad.js';
import {runWithGradient, zeroGrad} from '../gradients/kernel_grad.js';
import type {BatchedGemmOptions} from './batched_gemm.js';
import {checkGemmOperands, gemmInputs} from './batched_gemm.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {SWIGLU_ACTIVATION_KEYS, SwigluActivationOptions} from './fused_swiglu_scale.js';
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
export function batchedGemmSwiglu(lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D,
                                  options: BatchedGemmSwigluOptions = {}): Tensor2D {
  const g = checkGemmOperands(OP, lhs, rhs, segments, options, ['scale', ...SWIGLU_ACTIVATION_KEYS]);
  if (g.width % 2 !== 0) {
    throw argError(OP, 'rhs', 'a weight with an even output width N = 2I (gate columns, then up columns)',
                   `shape [${g.rhs.shape.join(',')}] (N = ${g.width})`);
  }
  const scale = checkOptionalTensor(OP, 'options.scale', g.options.scale, 1, 'float32', '[R]') as Tensor1D | null;
  if (scale != null) checkShape(OP, 'options.scale', scale, [g.lhs.shape[0]], '[R]');
  const attrs: BatchedGemmSwigluAttrs = {...g.attrs, ...checkSwigluActivation(OP, 'options.', g.options)};

  const inputs = gemmInputs(g);
  if (scale != null) inputs.scale = scale;
  const run = () => runMoeKernel(BatchedGemmSwiglu, inputs, attrs,
                                 () => batchedGemmSwigluComposite(g.lhs, g.rhs, g.segments, g.bias, scale, attrs));
  if ((g.bias == null && scale == null) || !usesMoeKernel(BatchedGemmSwiglu)) return run();
  // Bias and scale are optional inputs, which a registered gradient cannot be handed (gradients/kernel_grad.ts).
  const order: Tensor[] = [g.lhs, g.rhs, g.segments, ...(g.bias != null ? [g.bias] : []), ...(scale != null ? [scale] : [])];
  return runWithGradient(order, run, (dy, saved) => {
    const [l, r, s] = saved as [Tensor2D, Tensor3D, Tensor1D];
    const b = g.bias != null ? saved[3] as Tensor2D : null;
    const sc = scale != null ? saved[saved.length - 1] as Tensor1D : null;
    const grads = batchedGemmSwigluGrads(dy, l, r, s, b, sc, attrs);
    return [grads.lhs, grads.rhs, zeroGrad(s), ...(b != null ? [grads.bias!] : []), ...(sc != null ? [grads.scale!] : [])];
  });
}
