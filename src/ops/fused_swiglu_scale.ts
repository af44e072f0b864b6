import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {fusedSwigluScaleComposite} from '../kernels/composite/fused_swiglu_scale_composite.js';
import {FusedSwigluScale, SwigluActivation} from '../kernels/kernel_names.js';
import {swigluScaleGrads} from '../gradients/fused_swiglu_scale_grad.js';
import {runWithGradient} from '../gradients/kernel_grad.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {argError, checkOptions, checkOptionalTensor, checkShape, checkSwigluActivation, checkTensor} from './validate.js';

const OP = 'fusedSwigluScale';

/** The expert activation (docs/semantics.md section 5); the defaults are plain SwiGLU. */
export interface SwigluActivationOptions {
  /** 'swiglu' (default) or gpt-oss's 'clamped_swiglu'. */
  activation?: SwigluActivation;
  /** clamped_swiglu: the sigmoid's slope (default 1.702). */
  swigluAlpha?: number;
  /** clamped_swiglu: gate clamped above, up to [-limit, limit] (default 7, > 0). */
  swigluLimit?: number;
}
export const SWIGLU_ACTIVATION_KEYS = ['activation', 'swigluAlpha', 'swigluLimit'];

/**
 * out[r,i] = act(x[r,i], x[r,I+i]) * scale[r] (docs/semantics.md section 5); the gate half comes first; act is
 * silu(gate) * up, or the clamped variant of options.activation.
 */
export function fusedSwigluScale(x: Tensor2D, scale: Tensor1D | null = null,
                                 options: SwigluActivationOptions = {}): Tensor2D {
  const $x = checkTensor(OP, 'x', x, 2, 'float32', '[R,2I]') as Tensor2D;
  if ($x.shape[1] % 2 !== 0) throw argError(OP, 'x', 'of shape [R,2I] with an even last dimension', `shape [${$x.shape}]`);
  const $scale = checkOptionalTensor(OP, 'scale', scale, 1, 'float32', '[R]') as Tensor1D | null;
  if ($scale != null) checkShape(OP, 'scale', $scale, [$x.shape[0]], '[R]');
  const act = checkSwigluActivation(OP, 'options.', checkOptions(OP, 'options', options, SWIGLU_ACTIVATION_KEYS));

  const inputs: Record<string, Tensor> = {x: $x};
  if ($scale != null) inputs.scale = $scale;
  const run = () => runMoeKernel(FusedSwigluScale, inputs, act, () => fusedSwigluScaleComposite($x, $scale, act));
  if ($scale == null || !usesMoeKernel(FusedSwigluScale)) return run();
  // The scale's value is part of x's gradient, and a registered gradient cannot be handed an optional input.
  return runWithGradient([$x, $scale], run, (dy, [xs, scales]) => {
    const {dx, dscale} = swigluScaleGrads(dy, xs as Tensor2D, scales as Tensor1D, act);
    return [dx, dscale!];
  });
}
