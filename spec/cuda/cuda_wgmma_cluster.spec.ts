/**
 * The sm_90a wgmma grouped GEMM on clusters of two blocks (configuration 4 of gemm_sm90.cu: 64x256 tiles, the weight
 * tile shared by TMA multicast, gemm_sm90.cuh CLUSTER) inside the CUDA layer, against the float64 reference, chosen
 * for every wgmma problem by TFJS_MOE_CUDA_SM90_TILES=4,4 with MOE_CUDA_WGMMA 'on'. Runs on an sm_90 device with an
 * addon built with sm_90a code (cudaStatus().wgmma), pending elsewhere.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_WGMMA} from 'tfjs-moe';

import {rng} from '../helpers/util.js';
import {expectLayerMatchesReference} from './moe_weights.js';
import {BOUND, CASES} from './wgmma_cases.js';

const status = cudaStatus();

// TFJS_MOE_CUDA_SM90_TILES=4,4: every problem the tile table gives the wgmma GEMM on configuration 4 (64x256, clusters
// of two blocks sharing the weight tile by TMA multicast; gemm_sm90.cuh CLUSTER): odd numbers of 64-row tiles (the
// second block of a cluster without rows), empty experts, the dense kAccumulate GEMM, the combine epilogue (T > 32).
describe('CUDA wgmma GEMM on clusters of two blocks (TMA multicast) in the layer vs the float64 reference', () => {
  const ENV = 'TFJS_MOE_CUDA_SM90_TILES';
  let saved: string | undefined;
  beforeEach(() => {
    if (!status.available) {
      pending(`CUDA unavailable (${status.code}): ${status.reason} (runs on the GPU machine)`);
    }
    if (!status.wgmma) pending(`the wgmma GEMM needs an sm_90 device with sm_90a code (device ${status.device})`);
    saved = process.env[ENV];
    process.env[ENV] = '4,4';
  });
  afterEach(() => {
    if (saved === undefined) delete process.env[ENV]; else process.env[ENV] = saved;
    tf.env().set(MOE_CUDA_WGMMA, 'auto');
  });
  for (const dtype of ['bfloat16', 'float16'] as CudaComputeDtype[]) {
    for (const [ci, c] of CASES.entries()) {
      it(`${c.name} [${dtype}, on, tiles 4,4] (T=${c.T}, H=${c.H})`, async () => {
        tf.env().set(MOE_CUDA_WGMMA, 'on');
        await expectLayerMatchesReference(rng(4000 + ci), c.T, c.H, c.cfg, dtype, BOUND[dtype]!,
                                          `cuda wgmma cluster layer ${dtype}`);
      });
    }
  }
});
