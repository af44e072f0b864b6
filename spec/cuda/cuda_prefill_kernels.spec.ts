/**
 * The CUDA layer at prefill sizes (T >= 256) against the float64 reference: the router's dense float32 GEMM on
 * 128x128 tiles with split-K (TF32 x 3 and exact FMA cores) and the half copy of x written from its tiles
 * (gemm_dense_f32.cuh), the one-pass permute
 * (more than 16384 pairs: several chunks) and the vectorized combine (with biases, probInAdvance, latent fc1/fc2
 * on the same dense GEMM). Kernel-level checks of the same kernels (random shapes, invalid ids, exact permutation,
 * memcheck) are bench/cuda_prefill_harness.cu; this spec checks them inside the forward. Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, rng} from '../helpers/util.js';
import {RefMoeConfig, RefMoeOptions} from '../reference/moe_reference.js';
import {expectLayerMatchesReference, randomMoeWeights} from './moe_weights.js';

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

// The router's TF32 x 3 core with its tiles by cp.async (the default) against the same core with register-staged
// tiles (TFJS_MOE_CUDA_DENSE_F32=tf32x3-regs): the same products in the same order, so the same logits bitwise; and
// the permute's vector id loads against its scalar loop (TFJS_MOE_CUDA_PERMUTE_VEC=0): the same rows. A float32 layer
// (no atomics in its combine) then gives bitwise the same output.
describe('CUDA prefill front: router cp.async tiles and permute vector loads vs the previous kernels', () => {
  const ENVS = ['TFJS_MOE_CUDA_DENSE_F32', 'TFJS_MOE_CUDA_PERMUTE_VEC'];
  const VARIANTS: Array<[string, Record<string, string>]> = [
    ['default', {}], ['tf32x3-regs', {TFJS_MOE_CUDA_DENSE_F32: 'tf32x3-regs'}],
    ['scalar permute', {TFJS_MOE_CUDA_PERMUTE_VEC: '0'}], ['default again', {}]];
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });
  for (const [T, H, note] of [[2100, 132, 'two permute chunks'], [300, 2048, '32 K slices'],
                              [513, 260, 'partial k tile, pairs % 4 != 0 at k = 3']] as const) {
    it(`gives bitwise the same layer output (T=${T}, H=${H}, ${note})`, async () => {
      const cfg = T === 513 ? {...CASES[0].cfg, topK: 3} : CASES[0].cfg;
      const rand = rng(7200 + T);
      const w = randomMoeWeights(rand, H, cfg as RefMoeConfig);
      const weights = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as
          unknown as CudaMoeWeightTensors;
      const xT = tf.tensor2d(randn(rand, T * H), [T, H]);
      const saved = ENVS.map(n => process.env[n]);
      const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: 'float32'});
      try {
        const outs: Float32Array[] = [];
        for (const [, env] of VARIANTS) {
          for (const n of ENVS) {
            if (env[n] === undefined) delete process.env[n]; else process.env[n] = env[n];
          }
          const out = layer.apply(xT, weights);
          outs.push(await out.data() as Float32Array);
          out.dispose();
        }
        const differing = (a: Float32Array, b: Float32Array) => a.reduce((n, v, i) => n + (Object.is(v, b[i]) ? 0 : 1), 0);
        for (let i = 1; i < VARIANTS.length; i++) {
          expect(differing(outs[0], outs[i])).withContext(`default vs ${VARIANTS[i][0]}`).toBe(0);
        }
      } finally {
        ENVS.forEach((n, i) => {
          if (saved[i] === undefined) delete process.env[n]; else process.env[n] = saved[i];
        });
        layer.dispose();
        tf.dispose([xT, ...Object.values(weights as unknown as Record<string, tf.Tensor>)]);
      }
    });
  }
});
