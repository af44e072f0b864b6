/**
 * Native int4 experts on CUDA (W4A16): a layer given int4 QuantizedExpertWeights keeps the packed codes and group
 * scales (and zero points) on the GPU. Its GEMMs read them: the weight-streaming kernels and the token-owned down
 * GEMM under MOE_CUDA_GEMM_TILES 'stream', and by default the tensor-core tiles up to 64 x 128 (the B fragments
 * dequantized in registers; MOE_CUDA_INT4_MMA false makes them read the dequantized copy, as the prefill tiles always
 * do; the fragments take two integer instructions per pair of weights, A's 8-value groups permuted to match;
 * 'int4-previous' is the earlier decode, A/B). Every output against the float64 reference evaluated on the format's own dequantized weights (refDequantize),
 * in float16 (5e-3) and bfloat16 (3e-2), at T that take each path. Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_GEMM_TILES, MOE_CUDA_INT4_MMA, quantizeExpertWeightsFromArray} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refDequantize} from '../reference/expert_formats_reference.js';
import {refFusedMoE, RefMoeWeights} from '../reference/moe_reference.js';

import {greedyMoeConfig, packedWeightTensors, randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();
const BOUND: Record<string, number> = {bfloat16: 3e-2, float16: 5e-3};
const AGREE: Record<string, number> = {bfloat16: 1e-2, float16: 2e-3};

const config = greedyMoeConfig;

describe('CUDA native int4 experts (W4A16 decode GEMMs)', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  const cases = [
    {name: 'symmetric, group 32', groupSize: 32, zeroPoint: false, H: 128, cfg: config(64, 2, 96)},
    {name: 'zero points, group 64, biases', groupSize: 64, zeroPoint: true, H: 192,
      cfg: {...config(32, 4, 64), withBias: true}},
    // K = 128 in both GEMMs: whole 128-deep stages, so the scales and zero points load as vectors there
    {name: 'zero points, group 32', groupSize: 32, zeroPoint: true, H: 128, cfg: config(16, 2, 128)},
  ];
  for (const dtype of ['float16', 'bfloat16'] as CudaComputeDtype[]) {
    for (const [ci, c] of cases.entries()) {
      it(`${c.name} [${dtype}]: T = 1 (token-owned down), 3 (streaming), 300, 1500 (tensor cores on codes and on the dequantized copy) vs the reference`,
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
           const tensors = packedWeightTensors(w, upQ, downQ);
           const layer = new CudaFusedMoe({hidden: H, ...c.cfg, computeDtype: dtype});
           const env = tf.env();
           // The combine kernel (slot order, the default) for the exact comparisons below; the option of adding the
           // down GEMM's rows with atomics is checked on int4 experts in cuda_decode_tiles.spec.ts.
           process.env.TFJS_MOE_CUDA_DECODE_COMBINE = 'kernel';
           try {
             // T = 1, 3: 16 x 64 tiles (or streaming); 100, 300: 32 x 128; 1500: 64 x 128 (BK 32): every int4 tile shape.
             for (const T of ci === 2 ? [1, 3, 100, 300, 1500] : [1, 3, 300, 1500]) {
               const x = randn(rand, T * H);
               const ref = refFusedMoE(x, T, H, refWeights as unknown as RefMoeWeights, c.cfg);
               const xT = tf.tensor2d(x, [T, H]);
               const outs: Record<string, Float32Array> = {};
               for (const [tiles, int4Mma] of [['stream', true], ['default', true], ['deep', true], ['shallow', true], ['default', false],
                 ['int4-previous', true], ['int4-wide', true]] as const) {
                 env.set(MOE_CUDA_GEMM_TILES, tiles);
                 env.set(MOE_CUDA_INT4_MMA, int4Mma);
                 const name = `${tiles}${int4Mma ? '' : '/dequantized'}`;
                 const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
                 outs[name] = (await out.data()) as Float32Array;
                 out.dispose();
                 const err = relError(outs[name], ref);
                 recordError(`cuda int4 ${dtype}`, err);
                 expect(err).withContext(`T ${T} ${name}`).toBeLessThan(BOUND[dtype]);
               }
               // The group scales (zeros) one 4-byte load each instead of vectors (A/B switch): the same products.
               // ('shallow': 128-deep stages at T = 1, 3, where 'default' takes 256-deep ones on this small grid.)
               env.set(MOE_CUDA_INT4_MMA, true);
               for (const tiles of ['default', 'shallow']) {
                 env.set(MOE_CUDA_GEMM_TILES, tiles);
                 process.env.TFJS_MOE_CUDA_INT4_SCALE_LOADS = 'each';
                 try {
                   const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
                   const each = (await out.data()) as Float32Array;
                   out.dispose();
                   expect(relError(each, outs[tiles])).withContext(`T ${T} ${tiles}: scale loads each vs vectors`).toBe(0);
                 } finally {
                   delete process.env.TFJS_MOE_CUDA_INT4_SCALE_LOADS;
                 }
               }
               // A/B switches: TFJS_MOE_CUDA_INT4_TILES=k64 (bf16), the 32-row int4 tiles with 64-deep stages (T where
               // those run: 300 in the first case, 100 in the last), and TFJS_MOE_CUDA_CODE_PREFETCH (L2 prefetch sizes
               // of the code loads): the same products in the same order.
               env.set(MOE_CUDA_GEMM_TILES, 'default');
               for (const [name, value] of [['INT4_TILES', 'k64'], ['CODE_PREFETCH', '0'], ['CODE_PREFETCH', '128']]) {
                 process.env[`TFJS_MOE_CUDA_${name}`] = value;
                 try {
                   const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
                   const o = (await out.data()) as Float32Array;
                   out.dispose();
                   expect(relError(o, ref)).withContext(`T ${T} ${name} ${value}`).toBeLessThan(BOUND[dtype]);
                   expect(relError(o, outs.default)).withContext(`T ${T} ${name} ${value} vs default`).toBeLessThan(1e-6);
                 } finally {
                   delete process.env[`TFJS_MOE_CUDA_${name}`];
                 }
               }
               // The tensor-core tiles on the codes vs on the dequantized copy: weights within an ulp of each other.
               expect(relError(outs.default, outs['default/dequantized'])).withContext(`T ${T} int4 vs dequantized`)
                   .toBeLessThan(AGREE[dtype]);
               // 'deep' / 'shallow': the int4 16 x 64 tiles with 256- / 128-deep K steps (same products, other padding).
               expect(relError(outs.deep, outs.default)).withContext(`T ${T} deep vs default`).toBeLessThan(1e-6);
               expect(relError(outs.shallow, outs.default)).withContext(`T ${T} shallow vs default`).toBeLessThan(1e-6);
               // 'int4-wide': the 16-row int4 tiles 128 columns wide (T = 1, 3; the others take the default tiles).
               expect(relError(outs['int4-wide'], outs.default)).withContext(`T ${T} wide vs default`).toBeLessThan(1e-6);
               // 'int4-previous': the previous fragment decode (bf16 16 x 64 tiles): the same weights, the products
               // of each 16-value step paired in another order.
               expect(relError(outs['int4-previous'], outs.default)).withContext(`T ${T} previous decode vs default`)
                   .toBeLessThan(1e-5);
               xT.dispose();
             }
           } finally {
             delete process.env.TFJS_MOE_CUDA_DECODE_COMBINE;
             env.set(MOE_CUDA_GEMM_TILES, 'default');
             env.set(MOE_CUDA_INT4_MMA, true);
             layer.dispose();
             tf.dispose(Object.values(tensors).filter(t => t instanceof tf.Tensor) as tf.Tensor[]);
             tf.dispose([upQ.values, upQ.scales!, downQ.values, downQ.scales!]);
             if (upQ.zeroPoints) tf.dispose([upQ.zeroPoints, downQ.zeroPoints!]);
           }
         });
    }
  }
});
