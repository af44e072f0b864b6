/**
 * The CUDA layer at prefill sizes (T >= 256) against the float64 reference: the router's dense float32 GEMM on
 * 128x128 tiles with split-K (TF32 x 3 and exact FMA cores) and the half copy of x written from its tiles
 * (gemm_dense_f32.cuh), the one-pass permute
 * (more than 16384 pairs: several chunks) and the vectorized combine (with biases, probInAdvance, latent fc1/fc2
 * on the same dense GEMM). Kernel-level checks of the same kernels (random shapes, invalid ids, exact permutation,
 * memcheck) are bench/cuda_prefill_harness.cu; this spec checks them inside the forward. Pending without CUDA.
 */
import {CudaComputeDtype, cudaStatus} from 'tfjs-moe';

import {rng} from '../helpers/util.js';
import {RefMoeOptions} from '../reference/moe_reference.js';
import {expectLayerMatchesReference} from './moe_weights.js';

const BOUND: Record<CudaComputeDtype, number> = {float32: 1e-4, bfloat16: 3e-2, float16: 5e-3};

function config(over: Partial<RefMoeOptions> & {numExperts: number, topK: number, intermediateSize: number}): RefMoeOptions {
  return {
    topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false,
    latentSize: null, withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false,
    ...over,
  };
}

const CASES: Array<{name: string, T: number, H: number, dtype: CudaComputeDtype, cfg: RefMoeOptions}> = [
  {name: 'router split-K, one-pass permute over two chunks', T: 2100, H: 132, dtype: 'float32',
    cfg: config({numExperts: 16, topK: 8, intermediateSize: 32})},
  {name: 'bfloat16: the half copy of x from the router tiles, biases in the combine', T: 1030, H: 200, dtype: 'bfloat16',
    cfg: config({numExperts: 12, topK: 3, intermediateSize: 48, withBias: true})},
  {name: 'probInAdvance (combine sums unweighted), float16', T: 1100, H: 96, dtype: 'float16',
    cfg: config({numExperts: 8, topK: 2, intermediateSize: 40, probInAdvance: true})},
  {name: 'latent fc1/fc2 on the dense GEMM', T: 1024, H: 136, dtype: 'float32',
    cfg: config({numExperts: 6, topK: 2, intermediateSize: 24, latentSize: 64})},
  {name: 'T = 300, H = 2048: 64 K slices of 128-row tiles', T: 300, H: 2048, dtype: 'bfloat16',
    cfg: config({numExperts: 32, topK: 4, intermediateSize: 16})},
  {name: 'H % 4 != 0 (element-wise loads: the previous kernels)', T: 1050, H: 90, dtype: 'float32',
    cfg: config({numExperts: 5, topK: 2, intermediateSize: 16})},
];

const status = cudaStatus();

describe('CUDA layer at prefill sizes (dense router GEMM, one-pass permute, vector combine) vs the float64 reference', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  for (const [ci, c] of CASES.entries()) {
    it(`${c.name} [${c.dtype}] (T=${c.T}, H=${c.H}, E=${c.cfg.numExperts}, k=${c.cfg.topK})`, async () => {
      await expectLayerMatchesReference(rng(7100 + ci), c.T, c.H, c.cfg, c.dtype, BOUND[c.dtype],
                                        `cuda prefill layer ${c.dtype}`);
    });
  }
});
