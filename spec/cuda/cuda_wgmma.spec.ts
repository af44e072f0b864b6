/**
 * The sm_90a wgmma grouped GEMM (src/kernels/cuda/gemm_sm90.cuh) inside the CUDA layer, against the float64
 * reference: MOE_CUDA_WGMMA 'on' sends every half-precision GEMM of the forward through it (the expert GEMMs with
 * the row gather and SwiGLU x scale epilogue, the dense shared-expert GEMMs with kAccumulate, decode-sized
 * segments on 64-row tiles), 'auto' only the prefill-sized ones. Shapes reach partial row tiles, partial column
 * tiles, K not a multiple of the 64-wide k tile, empty experts. The flag itself is checked everywhere; the GEMM
 * runs only on an sm_90 device with an addon built with sm_90a code (cudaStatus().wgmma), pending elsewhere.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_WGMMA} from 'tfjs-moe';

import {rng} from '../helpers/util.js';
import {expectLayerMatchesReference} from './moe_weights.js';
import {BOUND, CASES} from './wgmma_cases.js';

const status = cudaStatus();

describe('MOE_CUDA_WGMMA', () => {
  it('is registered with its default and rejects a bad value, naming the flag', () => {
    expect(tf.env().get(MOE_CUDA_WGMMA)).toBe('auto');
    expect(() => tf.env().set(MOE_CUDA_WGMMA, 'fast')).toThrowError(/MOE_CUDA_WGMMA must be one of auto, on, off, got "fast"/);
    expect(tf.env().get(MOE_CUDA_WGMMA)).toBe('auto');
  });
});

describe('CUDA wgmma grouped GEMM (sm_90a) in the layer vs the float64 reference', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
    if (!status.wgmma) {
      pending(`the wgmma GEMM needs an sm_90 device and an addon with sm_90a code (device ${status.device}, ` +
              `compute capability ${status.computeCapability}); it runs on the H200`);
    }
  });
  afterEach(() => tf.env().set(MOE_CUDA_WGMMA, 'auto'));

  for (const mode of ['on', 'auto']) {
    for (const dtype of ['bfloat16', 'float16'] as CudaComputeDtype[]) {
      for (const [ci, c] of CASES.entries()) {
        it(`${c.name} [${dtype}, ${mode}] (T=${c.T}, H=${c.H})`, async () => {
          tf.env().set(MOE_CUDA_WGMMA, mode);
          // greedy routing in every case
          await expectLayerMatchesReference(rng(4000 + ci), c.T, c.H, c.cfg, dtype, BOUND[dtype]!,
                                            `cuda wgmma layer ${dtype}`);
        });
      }
    }
  }
});

