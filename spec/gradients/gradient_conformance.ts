/**
 * The gradient suite: every MoE op's gradient against float64 central differences of spec/reference, on seeded
 * random small shapes, with leak checks. Instantiated per backend and path like the op conformance suite, e.g.
 * `describeGradientConformance('webgpu', {backend: 'webgpu', composite: false, scale: 'small'})`.
 * On the kernel path the gradients are ours (tf.registerGradient, or the ops' customGrad for scale/bias); on the
 * composite path they are tfjs's autodiff through the composite ops.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS, hasMoeKernel} from 'tfjs-moe';

import {ConformanceContext, OpConformanceOptions} from '../ops/conformance/context.js';
import {describeBatchedGemmGradients} from './cases/batched_gemm.js';
import {describeRoutingGradients} from './cases/routing.js';
import {describeSwigluPermuteCombineGradients} from './cases/swiglu_permute_combine.js';

export function describeGradientConformance(label: string, opts: OpConformanceOptions): void {
  const ctx = new ConformanceContext(label, opts);
  describe(`gradient conformance [${label}]`, () => {
    let previousBackend = '';
    let unavailable: string | null = null;
    let previousTimeout = 0;
    beforeAll(async () => {
      previousBackend = tf.getBackend();
      // Software GPUs (SwiftShader) on a shared machine can take seconds per case (as in the op conformance suite).
      previousTimeout = jasmine.DEFAULT_TIMEOUT_INTERVAL;
      if (opts.backend !== 'cpu') jasmine.DEFAULT_TIMEOUT_INTERVAL = Math.max(previousTimeout, 120_000);
      if (tf.findBackendFactory(opts.backend) == null) {
        unavailable = `backend '${opts.backend}' is not registered in this environment`;
        return;
      }
      const ok = await tf.setBackend(opts.backend);
      if (!ok) throw new Error(`gradient conformance [${label}]: backend '${opts.backend}' failed to initialise`);
      await tf.ready();
    });
    afterAll(async () => {
      jasmine.DEFAULT_TIMEOUT_INTERVAL = previousTimeout;
      if (previousBackend !== '' && tf.getBackend() !== previousBackend) await tf.setBackend(previousBackend);
    });
    beforeEach(() => {
      if (unavailable != null) pending(unavailable);
    });

    it('has a gradient registered for every MoE kernel', () => {
      for (const name of ALL_MOE_KERNELS) expect(tf.getGradient(name)).withContext(`gradient of ${name}`).toBeDefined();
    });

    if (!opts.composite) {
      // Without this, a missing registration would silently test the composite path under the kernel's name.
      it(`has a kernel of ours registered for every op on '${opts.backend}'`, () => {
        for (const name of ALL_MOE_KERNELS) {
          expect(hasMoeKernel(name, opts.backend)).withContext(`${name} registered for ${opts.backend}`).toBeTrue();
        }
      });
    }

    describeRoutingGradients(ctx);
    describeSwigluPermuteCombineGradients(ctx);
    describeBatchedGemmGradients(ctx);
  });
}
