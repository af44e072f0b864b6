/**
 * The op conformance suite: every public op against the float64 reference (spec/reference), on seeded random
 * shapes and values plus the semantics doc's edge cases, with leak checks and bad-input checks. Instantiated
 * once per backend and path, e.g. `describeOpConformance('webgpu', {backend: 'webgpu', composite: false,
 * scale: 'small'})` in a spec file of that backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS, hasMoeKernel} from 'tfjs-moe';

import {describeBadInputConformance} from './conformance/bad_input.js';
import {describeBatchedGemmConformance} from './conformance/batched_gemm.js';
import {describeCombineConformance} from './conformance/combine.js';
import {ConformanceContext, OpConformanceOptions} from './conformance/context.js';
import {describeGetMoeScoresConformance} from './conformance/get_moe_scores.js';
import {describeOpChainConformance} from './conformance/op_chain.js';
import {describePermuteConformance} from './conformance/permute.js';
import {describeSwigluConformance} from './conformance/swiglu.js';
import {describeTopkSelectConformance} from './conformance/topk_select.js';

export type {OpConformanceOptions} from './conformance/context.js';

export function describeOpConformance(label: string, opts: OpConformanceOptions): void {
  const ctx = new ConformanceContext(label, opts);
  describe(`op conformance [${label}]`, () => {
    let previousBackend = '';
    let unavailable: string | null = null;
    let previousTimeout = 0;
    beforeAll(async () => {
      previousBackend = tf.getBackend();
      // Software GPUs (SwiftShader) on a shared machine can take seconds per case; jasmine's default 5 s
      // would turn slowness into failures and then into bogus leak reports from the still-running case.
      previousTimeout = jasmine.DEFAULT_TIMEOUT_INTERVAL;
      if (opts.backend !== 'cpu') jasmine.DEFAULT_TIMEOUT_INTERVAL = Math.max(previousTimeout, 120_000);
      // A backend that could not register (no GPU adapter, no CUDA addon) makes every spec pending with the
      // reason, rather than failing the run; one that registered but fails to initialise is an error.
      if (tf.findBackendFactory(opts.backend) == null) {
        unavailable = `backend '${opts.backend}' is not registered in this environment`;
        return;
      }
      const ok = await tf.setBackend(opts.backend);
      if (!ok) throw new Error(`op conformance [${label}]: backend '${opts.backend}' failed to initialise`);
      await tf.ready();
    });
    afterAll(async () => {
      jasmine.DEFAULT_TIMEOUT_INTERVAL = previousTimeout;
      if (previousBackend !== '' && tf.getBackend() !== previousBackend) await tf.setBackend(previousBackend);
    });
    beforeEach(() => {
      if (unavailable != null) pending(unavailable);
    });

    if (!opts.composite) {
      // Without this, a missing registration would silently test the composite path under the kernel's name.
      it(`has a kernel of ours registered for every op on '${opts.backend}'`, () => {
        for (const name of ALL_MOE_KERNELS) {
          expect(hasMoeKernel(name, opts.backend)).withContext(`${name} registered for ${opts.backend}`).toBeTrue();
        }
      });
    }

    describeTopkSelectConformance(ctx);
    describeGetMoeScoresConformance(ctx);
    describePermuteConformance(ctx);
    describeBatchedGemmConformance(ctx);
    describeSwigluConformance(ctx);
    describeCombineConformance(ctx);
    describeOpChainConformance(ctx);
    describeBadInputConformance(ctx);
  });
}
