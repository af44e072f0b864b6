import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {fusedSwigluScaleComposite} from '../kernels/composite/fused_swiglu_scale_composite.js';
import {FusedSwigluScale} from '../kernels/kernel_names.js';
import {swigluScaleGrads} from '../gradients/fused_swiglu_scale_grad.js';
import {runWithGradient} from '../gradients/kernel_grad.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {argError, checkOptionalTensor, checkShape, checkTensor} from './validate.js';

const OP = 'fusedSwigluScale';

/** out[r,i] = silu(x[r,i]) * x[r,I+i] * scale[r] (docs/semantics.md section 5); the gate half comes first. */
export function fusedSwigluScale(x: Tensor2D, scale: Tensor1D | null = null): Tensor2D {
  const $x = checkTensor(OP, 'x', x, 2, 'float32', '[R,2I]') as Tensor2D;
  if ($x.shape[1] % 2 !== 0) throw argError(OP, 'x', 'of shape [R,2I] with an even last dimension', `shape [${$x.shape}]`);
  const $scale = checkOptionalTensor(OP, 'scale', scale, 1, 'float32', '[R]') as Tensor1D | null;
  if ($scale != null) checkShape(OP, 'scale', $scale, [$x.shape[0]], '[R]');

  const inputs: Record<string, Tensor> = {x: $x};
  if ($scale != null) inputs.scale = $scale;
  const run = () => runMoeKernel(FusedSwigluScale, inputs, {}, () => fusedSwigluScaleComposite($x, $scale));
  if ($scale == null || !usesMoeKernel(FusedSwigluScale)) return run();
  // The scale's value is part of x's gradient, and a registered gradient cannot be handed an optional input.
  return runWithGradient([$x, $scale], run, (dy, [xs, scales]) => {
    const {dx, dscale} = swigluScaleGrads(dy, xs as Tensor2D, scales as Tensor1D);
    return [dx, dscale!];
  });
}
