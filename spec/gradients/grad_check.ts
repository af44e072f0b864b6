/**
 * The gradient check shared by every op: tfjs's gradient of a scalar loss L = sum(C * op(inputs)) (C a fixed
 * random cotangent) against float64 central differences of the same loss computed from spec/reference.
 *
 * The reference sees exactly the float32 input values, widened to float64, and the differences are taken in
 * float64, so their own error is far below the bounds: truncation ~h^2 |L'''| and rounding ~1e-16 |L| / h, with h
 * chosen per op (1e-3 for the ops that are linear in the checked input, where only rounding remains; smaller for
 * softmax/sigmoid/SiLU). The checked quantity is relError (max |a - e| / max |e|) per input.
 */
import * as tf from '@tensorflow/tfjs-core';

import {expectNoLeak} from '../helpers/util.js';
import {ConformanceContext} from '../ops/conformance/context.js';

/** (f(x + h e_i) - f(x - h e_i)) / 2h for every element i of x, in float64. */
export function centralDifferences(f: (x: Float64Array) => number, x: ArrayLike<number>, h: number): Float64Array {
  const point = Float64Array.from(x);
  const out = new Float64Array(point.length);
  for (let i = 0; i < point.length; i++) {
    const v = point[i];
    point[i] = v + h;
    const up = f(point);
    point[i] = v - h;
    const down = f(point);
    point[i] = v;
    out[i] = (up - down) / (2 * h);
  }
  return out;
}

/** sum(C * values) in float64. */
export function dot(c: ArrayLike<number>, values: ArrayLike<number>): number {
  let acc = 0;
  for (let i = 0; i < c.length; i++) acc += c[i] * values[i];
  return acc;
}

export interface GradInput {
  name: string;
  values: Float32Array;
  shape: number[];
}

export interface GradCheck {
  /** Op name for the error table ('batchedGemm'); the table label is `${backend label} grad ${op} d/${input}`. */
  op: string;
  /** Case description for failure messages. */
  what: string;
  /** Differentiable float32 inputs, in the order `loss` receives them. */
  inputs: GradInput[];
  /** The tfjs loss: a scalar from the input tensors (int inputs and constants are closed over). */
  loss: (...xs: tf.Tensor[]) => tf.Scalar;
  /** The reference loss from float64 copies of the inputs (same order). */
  referenceLoss: (xs: Float64Array[]) => number;
  /** Central-difference step. */
  h: number;
  /** Bound on relError per input name (a number applies to all). */
  tol: number | Record<string, number>;
  /** Inputs whose exact gradient is 0 (selection-only biases): checked with an absolute bound instead. */
  zeroGradient?: string[];
}

/** Below this the central differences say the gradient is exactly 0 (they are exact to ~1e-10 here). */
const ZERO_GRADIENT = 1e-9;
const ABSOLUTE_ZERO_TOL = 1e-6;

/** Runs the check; returns the relative error per input. */
export async function checkGradients(ctx: ConformanceContext, check: GradCheck): Promise<Record<string, number>> {
  const errors: Record<string, number> = {};
  await expectNoLeak(async () => {
    const tensors = check.inputs.map(i => tf.tensor(i.values, i.shape, 'float32'));
    let grads: Float32Array[];
    try {
      // engine().gradients with allowNoGradients: tf.grads throws for an input the loss does not depend on
      // (a selection-only bias on the composite path), which is a zero gradient here.
      const {value, grads: gradTensors} = ctx.call(
          () => tf.engine().gradients(() => check.loss(...tensors), tensors, undefined, true)) as
          {value: tf.Tensor, grads: Array<tf.Tensor | null>};
      value.dispose();
      grads = [];
      for (let i = 0; i < check.inputs.length; i++) {
        const {name, shape, values} = check.inputs[i];
        const g = gradTensors[i];
        if (g == null) {
          // tfjs reports an input the loss does not depend on as null (the composite path for a selection-only
          // bias, or an empty batch): a zero gradient, which the differences below must confirm.
          grads.push(new Float32Array(values.length));
          continue;
        }
        expect(g.shape).withContext(`shape of d/${name}`).toEqual(shape);
        expect(g.dtype).withContext(`dtype of d/${name}`).toBe('float32');
        grads.push(await g.data() as Float32Array);
      }
      tf.dispose(gradTensors.filter((g): g is tf.Tensor => g != null));
    } finally {
      tf.dispose(tensors);
    }
    const base = check.inputs.map(i => Float64Array.from(i.values));
    for (let i = 0; i < check.inputs.length; i++) {
      const {name} = check.inputs[i];
      const expected = centralDifferences(x => {
        const args: Float64Array[] = base.slice();
        args[i] = x;
        return check.referenceLoss(args);
      }, base[i], check.h);
      if (check.zeroGradient?.includes(name)) {
        const worst = Math.max(0, ...Array.from(grads[i], Math.abs), ...Array.from(expected, Math.abs));
        expect(worst).withContext(`${check.op} ${check.what}: d/${name} must be 0 (selection only)`)
            .toBeLessThan(ABSOLUTE_ZERO_TOL);
        continue;
      }
      const tol = typeof check.tol === 'number' ? check.tol : check.tol[name];
      const label = `grad ${check.op} d/${name}`;
      if (Math.max(0, ...Array.from(expected, Math.abs)) < ZERO_GRADIENT) {
        // An identically zero gradient (e.g. k = 1 renormalised weights, always 1): no scale to be relative to, so
        // the float32 rounding noise of the path is bounded absolutely (cotangents and inputs are O(1)).
        const worst = Math.max(0, ...Array.from(grads[i], Math.abs));
        expect(worst).withContext(`${check.op} ${check.what}: d/${name} must be ~0`).toBeLessThan(ABSOLUTE_ZERO_TOL);
        errors[name] = 0;
        continue;
      }
      errors[name] = ctx.expectClose(label, grads[i], expected, tol, check.what);
    }
  });
  return errors;
}
