/**
 * The gradient suite: every MoE op's gradient against float64 central differences of spec/reference, on seeded
 * random small shapes, with leak checks. Instantiated per backend and path like the op conformance suite, e.g.
 * `describeGradientConformance('webgpu', {backend: 'webgpu', composite: false, scale: 'small'})`.
 * On the kernel path the gradients are ours (tf.registerGradient, or the ops' customGrad for scale/bias); on the
 * composite path they are tfjs's autodiff through the composite ops.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS} from 'tfjs-moe';

import {ConformanceContext, OpConformanceOptions, useSuiteBackend} from '../ops/conformance/context.js';
import {describeBatchedGemmGradients} from './cases/batched_gemm.js';
import {describeRoutingGradients, describeRoutingOptionGradients} from './cases/routing.js';
import {describeSwigluPermuteCombineGradients} from './cases/swiglu_permute_combine.js';

export function describeGradientConformance(label: string, opts: OpConformanceOptions): void {
  const ctx = new ConformanceContext(label, opts);
  describe(`gradient conformance [${label}]`, () => {
    useSuiteBackend(`gradient conformance [${label}]`, opts);

    it('has a gradient registered for every MoE kernel', () => {
      for (const name of ALL_MOE_KERNELS) expect(tf.getGradient(name)).withContext(`gradient of ${name}`).toBeDefined();
    });

    describeRoutingGradients(ctx);
    describeRoutingOptionGradients(ctx);
    describeSwigluPermuteCombineGradients(ctx);
    describeBatchedGemmGradients(ctx);
  });
}
