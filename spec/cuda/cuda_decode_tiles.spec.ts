/**
 * The 16-row decode tiles' A/B switches of session 8, in bf16 / f16 experts and native int4 experts: two register
 * sets of mma fragments (the default; TFJS_MOE_CUDA_FRAG_BUFS=1 keeps one), three pipeline stages instead of four
 * or two 256-deep ones on grids of two or more blocks per SM (TFJS_MOE_CUDA_DECODE_STAGES=3 / k256x2), the grid
 * walking column tiles first (TFJS_MOE_CUDA_DECODE_GRID=cols) and 16 x 48 tiles on small grids where N is a multiple
 * of 48 (TFJS_MOE_CUDA_DECODE_BN=48). None changes a product or the order of a sum (the stage depths only pad K with
 * more zero steps), so each output must equal the default's, and all of them the float64 reference within the
 * dtype's bound. TFJS_MOE_CUDA_DECODE_COMBINE=add (the down GEMM adds its rows into the output with atomics, no
 * combine kernel) sums the same terms in another order: within 1e-6 of the default. T = 1 takes the tiles of small grids (128-deep bf16 / 256-deep int4 stages; the up_gate GEMM's
 * N = 384 takes the 16 x 48 ones), T = 32 of 64 experts top-4 the tiles of larger grids (64- / 128-deep), where the
 * stage switches apply. Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, quantizeExpertWeightsFromArray} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refDequantize} from '../reference/expert_formats_reference.js';
import {refFusedMoE, RefMoeWeights} from '../reference/moe_reference.js';

import {greedyMoeConfig, packedWeightTensors, randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();
const BOUND: Record<string, number> = {bfloat16: 3e-2, float16: 5e-3};
// [switches, exact]: the stage depths may pad K with more zero steps, within 1e-6 (as the decode GEMM spec's 'deep').
const SWITCHES: Array<[Record<string, string>, boolean]> = [
  [{TFJS_MOE_CUDA_FRAG_BUFS: '1'}, true], [{TFJS_MOE_CUDA_DECODE_GRID: 'cols'}, true],
  [{TFJS_MOE_CUDA_DECODE_BN: '48'}, true], [{TFJS_MOE_CUDA_DECODE_STAGES: '3'}, false],
  [{TFJS_MOE_CUDA_DECODE_STAGES: 'k256x2'}, false],
  [{TFJS_MOE_CUDA_FRAG_BUFS: '1', TFJS_MOE_CUDA_DECODE_STAGES: '3', TFJS_MOE_CUDA_DECODE_GRID: 'cols'}, false],
  // The down GEMM adding its weighted rows into the zeroed output (float32 atomics): the same terms, summed in an
  // order that may change from call to call.
  [{TFJS_MOE_CUDA_DECODE_COMBINE: 'add'}, false],
];

describe('CUDA 16-row decode tiles: fragment buffers, stage depth, grid order, 48-wide tiles', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  const H = 512, cfg = greedyMoeConfig(64, 4, 192);
  // Under compute-sanitizer (TFJS_MOE_SPEC_SCALE=small) bfloat16 only: the same kernels' code for both dtypes.
  const dtypes: CudaComputeDtype[] = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? ['bfloat16'] : ['bfloat16', 'float16'];
  for (const format of ['half', 'int4'] as const) {
    for (const dtype of dtypes) {
      it(`${format} experts [${dtype}]: T = 1, 32, every switch equal to the default and to the reference`, async () => {
        const rand = rng(8100 + (format === 'int4' ? 10 : 0) + (dtype === 'float16' ? 1 : 0));
        const w = randomMoeWeights(rand, H, cfg);
        const E = cfg.numExperts, I = cfg.intermediateSize;
        let refWeights = w;
        let tensors: Record<string, unknown>;
        const packed: tf.Tensor[] = [];
        if (format === 'int4') {
          const upQ = quantizeExpertWeightsFromArray(w.upGateProjWeight, [E, H, 2 * I], 'int4', {groupSize: 32});
          const downQ = quantizeExpertWeightsFromArray(w.downProjWeight, [E, I, H], 'int4', {groupSize: 32});
          const deq = (q: typeof upQ) => Float32Array.from(refDequantize({
            format: 'int4', shape: q.shape, transposed: false, groupSize: q.groupSize, zeroPoint: q.zeroPoint,
            values: q.values.dataSync(), scales: q.scales!.dataSync(), zeroPoints: q.zeroPoints?.dataSync()}));
          refWeights = {...w, upGateProjWeight: deq(upQ), downProjWeight: deq(downQ)};
          tensors = packedWeightTensors(w, upQ, downQ);
          packed.push(upQ.values, upQ.scales!, downQ.values, downQ.scales!);
        } else {
          tensors = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)]));
        }
        const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: dtype});
        try {
          for (const T of [1, 32]) {
            const x = randn(rand, T * H);
            const ref = refFusedMoE(x, T, H, refWeights as unknown as RefMoeWeights, cfg);
            const xT = tf.tensor2d(x, [T, H]);
            const run = async (env: Record<string, string>) => {
              Object.assign(process.env, env);
              try {
                let o: Float32Array = new Float32Array(0);
                for (let call = 0; call < 2; call++) {  // the second call replays the CUDA graph
                  const out = layer.apply(xT, tensors as CudaMoeWeightTensors);
                  o = (await out.data()) as Float32Array;
                  out.dispose();
                }
                return o;
              } finally {
                for (const name of Object.keys(env)) delete process.env[name];
              }
            };
            const base = await run({});
            const err = relError(base, ref);
            recordError(`cuda decode tiles ${format} ${dtype}`, err);
            expect(err).withContext(`T ${T} default`).toBeLessThan(BOUND[dtype]);
            for (const [sw, exact] of SWITCHES) {
              const o = await run(sw);
              const name = `T ${T} ${JSON.stringify(sw)}`;
              expect(relError(o, ref)).withContext(name).toBeLessThan(BOUND[dtype]);
              if (exact) expect(relError(o, base)).withContext(`${name} vs default`).toBe(0);
              else expect(relError(o, base)).withContext(`${name} vs default`).toBeLessThan(1e-6);
            }
            xT.dispose();
          }
        } finally {
          layer.dispose();
          tf.dispose(Object.values(tensors).filter(t => t instanceof tf.Tensor) as tf.Tensor[]);
          tf.dispose(packed);
        }
      });
    }
  }
});
