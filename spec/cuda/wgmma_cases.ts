/**
 * The layer cases of the wgmma GEMM specs (cuda_wgmma.spec.ts, cuda_wgmma_cluster.spec.ts): prefill shapes with
 * partial row and column tiles, K not a multiple of 64, empty experts, biases, a shared expert, the input-side
 * routing weight, clamped SwiGLU, and one decode shape.
 */
import {CudaComputeDtype} from 'tfjs-moe';

import {RefMoeOptions} from '../reference/moe_reference.js';

export const BOUND: Partial<Record<CudaComputeDtype, number>> = {bfloat16: 3e-2, float16: 5e-3};

function config(over: Partial<RefMoeOptions> & {numExperts: number, topK: number, intermediateSize: number}): RefMoeOptions {
  return {
    topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false,
    latentSize: null, withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false,
    ...over,
  };
}

export const CASES: Array<{name: string, T: number, H: number, cfg: RefMoeOptions}> = [
  {name: 'prefill: 128-row tiles, short last tiles', T: 512, H: 256, cfg: config({numExperts: 8, topK: 2, intermediateSize: 192})},
  {name: 'K % 64 != 0, partial column tiles, biases', T: 300, H: 200, cfg: config({numExperts: 6, topK: 3, intermediateSize: 104, withBias: true})},
  {name: 'empty experts, probInAdvance, shared expert (dense kAccumulate)', T: 130, H: 128,
    cfg: config({numExperts: 64, topK: 2, intermediateSize: 64, probInAdvance: true, sharedExpertIntermediateSize: 96})},
  {name: 'routing weight on the input, clamped SwiGLU', T: 200, H: 64,
    cfg: config({numExperts: 4, topK: 2, intermediateSize: 136, routingWeightOn: 'input', activation: 'clamped_swiglu',
      swigluAlpha: 1.702, swigluLimit: 7})},
  {name: 'decode T=1', T: 1, H: 256, cfg: config({numExperts: 16, topK: 4, intermediateSize: 64})},
];

