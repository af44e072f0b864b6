/**
 * The op conformance suite: every public op against the float64 reference (spec/reference), on seeded random
 * shapes and values plus docs/semantics.md's edge cases, with leak checks and bad-input checks. Instantiated
 * once per backend and path, e.g. `describeOpConformance('webgpu', {backend: 'webgpu', composite: false,
 * scale: 'small'})` in a spec file of that backend.
 */
import {describeBadInputConformance} from './conformance/bad_input.js';
import {describeBatchedGemmConformance} from './conformance/batched_gemm.js';
import {describeBatchedGemmSwigluConformance} from './conformance/batched_gemm_swiglu.js';
import {describeCombineConformance} from './conformance/combine.js';
import {ConformanceContext, OpConformanceOptions, useSuiteBackend} from './conformance/context.js';
import {describeGetMoeScoresConformance} from './conformance/get_moe_scores.js';
import {describeOpChainConformance} from './conformance/op_chain.js';
import {describePermuteConformance} from './conformance/permute.js';
import {describeRoutingOptionsConformance} from './conformance/routing_options.js';
import {describeSwigluConformance} from './conformance/swiglu.js';
import {describeTopkSelectConformance} from './conformance/topk_select.js';

export type {OpConformanceOptions} from './conformance/context.js';

export function describeOpConformance(label: string, opts: OpConformanceOptions): void {
  const ctx = new ConformanceContext(label, opts);
  describe(`op conformance [${label}]`, () => {
    useSuiteBackend(`op conformance [${label}]`, opts);

    describeTopkSelectConformance(ctx);
    describeGetMoeScoresConformance(ctx);
    describeRoutingOptionsConformance(ctx);
    describePermuteConformance(ctx);
    describeBatchedGemmConformance(ctx);
    describeSwigluConformance(ctx);
    describeBatchedGemmSwigluConformance(ctx);
    describeCombineConformance(ctx);
    describeOpChainConformance(ctx);
    describeBadInputConformance(ctx);
  });
}
