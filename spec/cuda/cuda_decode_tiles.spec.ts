/**
 * The 16-row decode tiles' choices and A/B switches of session 8, in bf16 / f16 experts and native int4 experts:
 * two register sets of mma fragments (TFJS_MOE_CUDA_FRAG_BUFS=1 keeps one), the grid walking column tiles first on
 * small grids (TFJS_MOE_CUDA_DECODE_GRID=rows / cols force an order), three 128-deep int4 stages on larger grids
 * (TFJS_MOE_CUDA_DECODE_STAGES=4 / 3 force a depth, k256x2 two 256-deep bf16 stages; TFJS_MOE_CUDA_DECODE_DOWN=k128
 * 128-deep bf16 stages for K <= 1024), 16 x 48 tiles on small grids
 * where N is a multiple of 48 (the default for half-precision weights since session 9; TFJS_MOE_CUDA_DECODE_BN=48
 * also for int4 codes, '64' for neither), and the decode down GEMM adding its weighted rows into
 * the output with float32 atomics (TFJS_MOE_CUDA_DECODE_COMBINE=add; the default is the combine kernel). With the
 * combine kernel none of the tile switches changes a product or the order of a sum (the stage depths only pad K
 * with more zero steps), so their outputs must equal each other; the atomic option sums the same terms in an order
 * that can change from call to call: within 1e-6 of them. Session 9: routing + permute as one block after the router
 * GEMM (TFJS_MOE_CUDA_DECODE_FRONT=route2) and the combine tail in the down GEMM (TFJS_MOE_CUDA_DECODE_COMBINE=tail),
 * both exact. All within the dtype's bound of the float64 reference.
 * T = 1 takes the tiles of small grids (128-deep bf16 / 256-deep int4 stages; the up_gate GEMM's N = 384 the
 * 16 x 48 ones), T = 32 of 64 experts top-4 those of larger grids (64- / 128-deep), where the stage switches apply.
 * Pending without CUDA.
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
// The switches, with the combine kernel (TFJS_MOE_CUDA_DECODE_COMBINE=kernel), and the T they change: [env, T,
// exact]; the stage depths may pad K with more zero steps, within 1e-6 (as the decode GEMM spec's 'deep').
const KERNEL = {TFJS_MOE_CUDA_DECODE_COMBINE: 'kernel'};
const SWITCHES: Array<[Record<string, string>, number[], boolean]> = [
  [{TFJS_MOE_CUDA_FRAG_BUFS: '1'}, [1, 32], true],
  [{TFJS_MOE_CUDA_DECODE_GRID: 'rows'}, [1], true], [{TFJS_MOE_CUDA_DECODE_GRID: 'cols'}, [32], true],
  [{TFJS_MOE_CUDA_DECODE_BN: '48'}, [1], true], [{TFJS_MOE_CUDA_DECODE_BN: '64'}, [1], true],
  [{TFJS_MOE_CUDA_DECODE_STAGES: '3'}, [32], false], [{TFJS_MOE_CUDA_DECODE_STAGES: '4'}, [32], false],
  [{TFJS_MOE_CUDA_DECODE_STAGES: 'k256x2'}, [32], false], [{TFJS_MOE_CUDA_DECODE_DOWN: 'k128'}, [32], false],
  [{TFJS_MOE_CUDA_FRAG_BUFS: '1', TFJS_MOE_CUDA_DECODE_STAGES: '4', TFJS_MOE_CUDA_DECODE_GRID: 'rows'}, [1, 32], false],
  // Session 9: routing + permute in one block after the router GEMM (T <= 16), the combine tail (T <= 32).
  [{TFJS_MOE_CUDA_DECODE_FRONT: 'route2'}, [1], true], [{TFJS_MOE_CUDA_DECODE_COMBINE: 'tail'}, [1, 32], true],
  [{TFJS_MOE_CUDA_DECODE_FRONT: 'route2', TFJS_MOE_CUDA_DECODE_COMBINE: 'tail'}, [1], true],
];

describe('CUDA 16-row decode tiles: fragment buffers, stage depth, grid order, 48-wide tiles, the down GEMM\'s combine', () => {
  beforeEach(() => {
    if (!status.available) {
      pending(`CUDA unavailable (${status.code}): ${status.reason} (runs on the GPU machine)`);
    }
  });

  const H = 512, cfg = greedyMoeConfig(64, 4, 192);
  // float16 for the half experts only (the int4 decode spec covers int4 in float16), and under compute-sanitizer
  // (TFJS_MOE_SPEC_SCALE=small) bfloat16 only: the same kernels' code for both dtypes.
  const small = process.env.TFJS_MOE_SPEC_SCALE === 'small';
  for (const format of ['half', 'int4'] as const) {
    for (const dtype of (small || format === 'int4' ? ['bfloat16'] : ['bfloat16', 'float16']) as CudaComputeDtype[]) {
      it(`${format} experts [${dtype}]: T = 1, 32, every switch vs the combine kernel's default and the reference`, async () => {
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
            const base = await run(KERNEL);
            const err = relError(base, ref);
            recordError(`cuda decode tiles ${format} ${dtype}`, err);
            expect(err).withContext(`T ${T} combine kernel`).toBeLessThan(BOUND[dtype]);
            // The default is the combine kernel (reproducible bit for bit); the atomic option within 1e-6 of it.
            expect(relError(await run({}), base)).withContext(`T ${T} default vs combine kernel`).toBe(0);
            const added = await run({TFJS_MOE_CUDA_DECODE_COMBINE: 'add'});
            expect(relError(added, ref)).withContext(`T ${T} atomic combine`).toBeLessThan(BOUND[dtype]);
            expect(relError(added, base)).withContext(`T ${T} atomic combine vs combine kernel`).toBeLessThan(1e-6);
            for (const [sw, Ts, exact] of SWITCHES) {
              if (!Ts.includes(T)) continue;
              const o = await run({...KERNEL, ...sw});
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
