/**
 * Native int8 and mxfp4 experts on CUDA: a layer given int8 (groups of a multiple of 32 codes) or mxfp4
 * QuantizedExpertWeights (half compute dtypes) keeps the codes and block scales on the GPU, and its tensor-core tiles
 * up to 64 x 128 read them, each code turned into its float32 weight (s * q; E2M1 * 2^(b-127)) and rounded to the
 * compute dtype in registers (the weights of the dequantized copy, bit for bit); the prefill tiles and the 'stream'
 * kernels read the dequantized copy, and by default so do segments of more than 8 rows and, for mxfp4, one-token grids
 * (TFJS_MOE_CUDA_FORMATS=mma96: the codes up to 96 rows on every grid, so each tile shape runs here).
 * TFJS_MOE_CUDA_FORMATS=copy makes every GEMM read the copy (A/B). Every output against the float64 reference
 * evaluated on the format's own dequantized weights (refDequantize), in float16 (5e-3) and bfloat16 (3e-2), at T that
 * take each int8 tile shape, and against the copy path (same weights, so only float32 summation order differs).
 * Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_GEMM_TILES, quantizeExpertWeightsFromArray} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeRunner, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refDequantize} from '../reference/expert_formats_reference.js';
import {refFusedMoE, RefMoeWeights} from '../reference/moe_reference.js';

import {greedyMoeConfig, packedWeightTensors, randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();
const BOUND: Record<string, number> = {bfloat16: 3e-2, float16: 5e-3};
// Same weights in both paths: the sums differ only in float32 order (the prefill sizes may take other tiles).
const AGREE = 1e-5;

const config = greedyMoeConfig;

describe('CUDA native int8 / mxfp4 experts (tensor-core GEMMs)', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  const cases = [
    {name: 'int8 group 32', format: 'int8' as const, groupSize: 32 as number | undefined, H: 128, cfg: config(64, 2, 96)},
    {name: 'int8 one scale per column, biases', format: 'int8' as const, groupSize: undefined, H: 192,
      cfg: {...config(32, 4, 64), withBias: true}},
    // groups of 16 codes: no native tiles, the dequantized copy everywhere (still exact to the reference)
    {name: 'int8 group 16 (dequantized copy)', format: 'int8' as const, groupSize: 16, H: 64, cfg: config(16, 2, 64)},
    {name: 'mxfp4', format: 'mxfp4' as const, groupSize: undefined, H: 128, cfg: config(64, 2, 96)},
    {name: 'mxfp4, biases', format: 'mxfp4' as const, groupSize: undefined, H: 192, cfg: {...config(32, 4, 64), withBias: true}},
  ];
  for (const dtype of ['float16', 'bfloat16'] as CudaComputeDtype[]) {
    for (const [ci, c] of cases.entries()) {
      it(`${c.name} [${dtype}]: T = 1, 3 (16 x 64), 300 (32 x 128), 1500 (64 x 128; with 'mma96') vs the reference and the copy path`,
         async () => {
           const rand = rng(8300 + ci);
           const H = c.H, E = c.cfg.numExperts, I = c.cfg.intermediateSize;
           const w = randomMoeWeights(rand, H, c.cfg);
           const opts = c.groupSize == null ? {} : {groupSize: c.groupSize};
           const upQ = quantizeExpertWeightsFromArray(w.upGateProjWeight, [E, H, 2 * I], c.format, opts);
           const downQ = quantizeExpertWeightsFromArray(w.downProjWeight, [E, I, H], c.format, opts);
           const deq = (q: typeof upQ) => Float32Array.from(refDequantize({
             format: c.format, shape: q.shape, transposed: false, groupSize: q.groupSize, zeroPoint: false,
             values: q.values.dataSync(), scales: q.scales!.dataSync()}));
           const refWeights = {...w, upGateProjWeight: deq(upQ), downProjWeight: deq(downQ)};
           const tensors = packedWeightTensors(w, upQ, downQ);
           const layer = new CudaFusedMoe({hidden: H, ...c.cfg, computeDtype: dtype});
           const env = tf.env();
           const run = (xT: tf.Tensor, formats?: string) => {
             if (formats != null) process.env.TFJS_MOE_CUDA_FORMATS = formats;
             try {
               const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
               const v = out.dataSync() as Float32Array;
               out.dispose();
               return v;
             } finally {
               delete process.env.TFJS_MOE_CUDA_FORMATS;
             }
           };
           try {
             for (const T of [1, 3, 300, 1500]) {
               const x = randn(rand, T * H);
               const ref = refFusedMoE(x, T, H, refWeights as unknown as RefMoeWeights, c.cfg);
               const xT = tf.tensor2d(x, [T, H]);
               const outs: Record<string, Float32Array> = {};
               // 'deep': the 16 x 64 tiles with 128-deep K steps; 'shallow': 64-deep; 'stream': the copy's kernels.
               for (const tiles of ['default', 'deep', 'shallow', 'stream']) {
                 env.set(MOE_CUDA_GEMM_TILES, tiles);
                 outs[tiles] = run(xT);
                 const err = relError(outs[tiles], ref);
                 recordError(`cuda ${c.format} ${dtype}`, err);
                 expect(err).withContext(`T ${T} ${tiles}`).toBeLessThan(BOUND[dtype]);
               }
               env.set(MOE_CUDA_GEMM_TILES, 'default');
               outs.copy = run(xT, 'copy');
               expect(relError(outs.copy, ref)).withContext(`T ${T} copy`).toBeLessThan(BOUND[dtype]);
               outs.mma96 = run(xT, 'mma96');
               expect(relError(outs.mma96, ref)).withContext(`T ${T} mma96`).toBeLessThan(BOUND[dtype]);
               expect(relError(outs.default, outs.copy)).withContext(`T ${T} codes vs dequantized copy`)
                   .toBeLessThan(AGREE);
               expect(relError(outs.mma96, outs.copy)).withContext(`T ${T} codes (mma96) vs dequantized copy`)
                   .toBeLessThan(AGREE);
               expect(relError(outs.deep, outs.default)).withContext(`T ${T} deep vs default`).toBeLessThan(AGREE);
               expect(relError(outs.shallow, outs.default)).withContext(`T ${T} shallow vs default`).toBeLessThan(AGREE);
               xT.dispose();
             }
           } finally {
             env.set(MOE_CUDA_GEMM_TILES, 'default');
             layer.dispose();
             tf.dispose(Object.values(tensors).filter(t => t instanceof tf.Tensor) as tf.Tensor[]);
             tf.dispose([upQ.values, upQ.scales!, downQ.values, downQ.scales!]);
           }
         });
    }
  }

  it('rejects int8 / mxfp4 arrays of the wrong size, naming the argument', () => {
    const H = 64, E = 4, I = 32;
    const cfg = {hidden: H, numExperts: E, topK: 2, intermediateSize: I, computeDtype: 'bfloat16' as const};
    const weights = {gateWeight: new Float32Array(H * E), upGateProjWeight: new Float32Array(E * H * 2 * I),
      downProjWeight: new Float32Array(E * I * H)};
    const good = {codes: new Int32Array(E * (H / 4) * 2 * I), scales: new Float32Array(E * (H / 32) * 2 * I), groupSize: 32};
    expect(() => new CudaMoeRunner(cfg, {...weights, upGateProjInt8: {...good, codes: new Int32Array(7)}}))
        .toThrowError(/weights\.upGateProjInt8\.codes.*must have/);
    expect(() => new CudaMoeRunner(cfg, {...weights, upGateProjInt8: {...good, groupSize: 0}}))
        .toThrowError(/weights\.upGateProjInt8\.groupSize must be a positive integer/);
    const fp4 = {codes: new Int32Array(E * (I / 8) * H), scales: new Int32Array(E * (I / 32) * (H / 4))};  // down: K = I
    expect(() => new CudaMoeRunner(cfg, {...weights, downProjMxfp4: {...fp4, scales: new Int32Array(5)}}))
        .toThrowError(/weights\.downProjMxfp4\.scales.*must have/);
  });
});
