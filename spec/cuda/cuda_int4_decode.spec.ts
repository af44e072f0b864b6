/**
 * Native int4 experts on CUDA (W4A16): a layer given int4 QuantizedExpertWeights keeps the packed codes and group
 * scales (and zero points) on the GPU and its decode GEMMs (the weight-streaming kernel, the token-owned down GEMM
 * with the combine) dequantize them in the mainloop; the tensor-core paths (more rows per expert) read the
 * dequantized copy. Every output against the float64 reference evaluated on the format's own dequantized weights
 * (refDequantize), in float16 (5e-3) and bfloat16 (3e-2), at T that take each path, with the streaming kernels
 * on (MOE_CUDA_GEMM_TILES 'stream', where the int4 copy is read) and off (default: the dequantized copy only).
 * Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_GEMM_TILES, quantizeExpertWeightsFromArray} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refDequantize} from '../reference/expert_formats_reference.js';
import {refFusedMoE, RefMoeConfig, RefMoeWeights} from '../reference/moe_reference.js';

import {randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();
const BOUND: Record<string, number> = {bfloat16: 3e-2, float16: 5e-3};

function config(E: number, k: number, I: number): RefMoeConfig {
  return {numExperts: E, topK: k, intermediateSize: I, topkMethod: 'greedy', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null, withBias: false,
    probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
}

describe('CUDA native int4 experts (W4A16 decode GEMMs)', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  const cases = [
    {name: 'symmetric, group 32', groupSize: 32, zeroPoint: false, H: 128, cfg: config(64, 2, 96)},
    {name: 'zero points, group 64, biases', groupSize: 64, zeroPoint: true, H: 192,
      cfg: {...config(32, 4, 64), withBias: true}},
  ];
  for (const dtype of ['float16', 'bfloat16'] as CudaComputeDtype[]) {
    for (const [ci, c] of cases.entries()) {
      it(`${c.name} [${dtype}]: T = 1 (token-owned down), 3 (streaming), 300 (tensor cores) vs the reference`,
         async () => {
           const rand = rng(7300 + ci);
           const H = c.H, E = c.cfg.numExperts, I = c.cfg.intermediateSize;
           const w = randomMoeWeights(rand, H, c.cfg);
           const opts = {groupSize: c.groupSize, zeroPoint: c.zeroPoint};
           const upQ = quantizeExpertWeightsFromArray(w.upGateProjWeight, [E, H, 2 * I], 'int4', opts);
           const downQ = quantizeExpertWeightsFromArray(w.downProjWeight, [E, I, H], 'int4', opts);
           const deq = (q: typeof upQ) => Float32Array.from(refDequantize({
             format: 'int4', shape: q.shape, transposed: false, groupSize: q.groupSize, zeroPoint: q.zeroPoint,
             values: q.values.dataSync(), scales: q.scales!.dataSync(), zeroPoints: q.zeroPoints?.dataSync()}));
           const refWeights = {...w, upGateProjWeight: deq(upQ), downProjWeight: deq(downQ)};
           const tensors: Record<string, unknown> = {};
           for (const [n, v] of Object.entries(w)) {
             if (n !== 'upGateProjWeight' && n !== 'downProjWeight') tensors[n] = tf.tensor1d(v);
           }
           tensors.upGateProjWeight = upQ;
           tensors.downProjWeight = downQ;
           const layer = new CudaFusedMoe({hidden: H, ...c.cfg, computeDtype: dtype});
           const env = tf.env();
           try {
             for (const T of [1, 3, 300]) {
               const x = randn(rand, T * H);
               const ref = refFusedMoE(x, T, H, refWeights as unknown as RefMoeWeights, c.cfg);
               const xT = tf.tensor2d(x, [T, H]);
               const outs: Record<string, Float32Array> = {};
               for (const tiles of ['stream', 'default']) {
                 env.set(MOE_CUDA_GEMM_TILES, tiles);
                 const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
                 outs[tiles] = (await out.data()) as Float32Array;
                 out.dispose();
                 const err = relError(outs[tiles], ref);
                 recordError(`cuda int4 ${dtype}`, err);
                 expect(err).withContext(`T ${T} ${tiles}`).toBeLessThan(BOUND[dtype]);
               }
               xT.dispose();
             }
           } finally {
             env.set(MOE_CUDA_GEMM_TILES, 'default');
             layer.dispose();
             tf.dispose(Object.values(tensors).filter(t => t instanceof tf.Tensor) as tf.Tensor[]);
             tf.dispose([upQ.values, upQ.scales!, downQ.values, downQ.scales!]);
             if (upQ.zeroPoints) tf.dispose([upQ.zeroPoints, downQ.zeroPoints!]);
           }
         });
    }
  }
});
