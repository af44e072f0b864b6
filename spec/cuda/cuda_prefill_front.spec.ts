/**
 * The prefill front's switches of session 9 (moe_layer.cc): the router's split-K slabs summed in the top-k kernel
 * (TFJS_MOE_CUDA_GATE_REDUCE=topk, the default; 'kernel': the reduction kernel first), the front's small kernels
 * under programmatic dependent launch (TFJS_MOE_CUDA_PDL_FRONT=1), and the wgmma tile table with the down GEMM on
 * 64x256 tiles at 9..96 rows per expert (the default; TFJS_MOE_CUDA_SM90_TABLE=s7 the previous one). On = the
 * switches on and the default table, off = both off and the previous table. Each way: against the
 * float64 reference (half types; two calls per layer) and bitwise against the other setting (float32: the same sums
 * in the same order, no atomics). Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, rng} from '../helpers/util.js';
import {RefMoeConfig, RefMoeOptions} from '../reference/moe_reference.js';
import {expectLayerMatchesReference, greedyMoeConfig, randomMoeWeights} from './moe_weights.js';

const ENVS = ['TFJS_MOE_CUDA_GATE_REDUCE', 'TFJS_MOE_CUDA_PDL_FRONT', 'TFJS_MOE_CUDA_SM90_TABLE'];
const ON: Record<string, string> = {TFJS_MOE_CUDA_GATE_REDUCE: 'topk', TFJS_MOE_CUDA_PDL_FRONT: '1'};
const OFF: Record<string, string> = {
  TFJS_MOE_CUDA_GATE_REDUCE: 'kernel', TFJS_MOE_CUDA_PDL_FRONT: '0', TFJS_MOE_CUDA_SM90_TABLE: 's7'};

function config(over: Partial<RefMoeOptions> & {numExperts: number, topK: number, intermediateSize: number}): RefMoeOptions {
  return {...greedyMoeConfig(over.numExperts, over.topK, over.intermediateSize), ...over};
}

async function withEnv<R>(env: Record<string, string>, body: () => Promise<R>): Promise<R> {
  const saved = ENVS.map(n => process.env[n]);
  for (const n of ENVS) {
    if (env[n] === undefined) delete process.env[n]; else process.env[n] = env[n];
  }
  try {
    return await body();
  } finally {
    ENVS.forEach((n, i) => {
      if (saved[i] === undefined) delete process.env[n]; else process.env[n] = saved[i];
    });
  }
}

const BOUND: Record<CudaComputeDtype, number> = {float32: 1e-4, bfloat16: 3e-2, float16: 5e-3};
const CASES: Array<{name: string, T: number, H: number, dtype: CudaComputeDtype, cfg: RefMoeOptions}> = [
  {name: '32 K slices (eight-slice batches of the top-k sum)', T: 300, H: 2048, dtype: 'bfloat16',
    cfg: config({numExperts: 32, topK: 4, intermediateSize: 16})},
  {name: 'biases, 7 K slices', T: 1030, H: 200, dtype: 'bfloat16',
    cfg: config({numExperts: 12, topK: 3, intermediateSize: 48, withBias: true})},
  {name: 'probInAdvance', T: 1100, H: 96, dtype: 'float16',
    cfg: config({numExperts: 8, topK: 2, intermediateSize: 40, probInAdvance: true})},
  {name: 'shared expert with its gate logit (router columns E + 1)', T: 600, H: 256, dtype: 'bfloat16',
    cfg: config({numExperts: 16, topK: 4, intermediateSize: 32, sharedExpertIntermediateSize: 24,
                 sharedExpertGate: true})},
  {name: 'latent fc1/fc2', T: 512, H: 136, dtype: 'bfloat16',
    cfg: config({numExperts: 6, topK: 2, intermediateSize: 24, latentSize: 64})},
];

const status = cudaStatus();

describe('CUDA prefill front switches (top-k split-K sum, PDL, tile table) vs the float64 reference', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });
  for (const [name, env] of [['on', ON], ['off', OFF]] as const) {
    for (const [ci, c] of CASES.entries()) {
      it(`${name}: ${c.name} [${c.dtype}] (T=${c.T}, H=${c.H}, E=${c.cfg.numExperts}, k=${c.cfg.topK})`, async () => {
        await withEnv(env, () => expectLayerMatchesReference(rng(9100 + ci), c.T, c.H, c.cfg, c.dtype, BOUND[c.dtype],
                                                             `cuda prefill front ${name} ${c.dtype}`));
      });
    }
  }
});

describe('CUDA prefill front switches: bitwise the same float32 layer output either way', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });
  const VARIANTS: Array<[string, Record<string, string>]> = [
    ['off', OFF], ['on', ON], ['top-k sum only', {...OFF, TFJS_MOE_CUDA_GATE_REDUCE: 'topk'}],
    ['PDL only', {...OFF, TFJS_MOE_CUDA_PDL_FRONT: '1'}], ['unset (defaults)', {}], ['off again', OFF]];
  for (const [T, H, E, k, shared, note] of [
    [2100, 132, 16, 8, true, '4 K slices (the sum\'s tail loop), shared gate column'],
    [300, 2048, 32, 4, false, '32 K slices'], [513, 260, 16, 3, false, 'partial k tile']] as const) {
    it(`T=${T}, H=${H}, E=${E}, k=${k}: ${note}`, async () => {
      const cfg = config({numExperts: E, topK: k, intermediateSize: 32, sharedExpertIntermediateSize: shared ? 16 : 0,
                          sharedExpertGate: shared});
      const rand = rng(9200 + T);
      const w = randomMoeWeights(rand, H, cfg as RefMoeConfig);
      const weights = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as
          unknown as CudaMoeWeightTensors;
      const xT = tf.tensor2d(randn(rand, T * H), [T, H]);
      const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: 'float32'});
      try {
        const outs: Float32Array[] = [];
        for (const [, env] of VARIANTS) {
          outs.push(await withEnv(env, async () => {
            const out = layer.apply(xT, weights);
            const v = await out.data() as Float32Array;
            out.dispose();
            return v;
          }));
        }
        const differing = (a: Float32Array, b: Float32Array) => a.reduce((n, v, i) => n + (Object.is(v, b[i]) ? 0 : 1), 0);
        for (let i = 1; i < VARIANTS.length; i++) {
          expect(differing(outs[0], outs[i])).withContext(`off vs ${VARIANTS[i][0]}`).toBe(0);
        }
      } finally {
        layer.dispose();
        tf.dispose([xT, ...Object.values(weights as unknown as Record<string, tf.Tensor>)]);
      }
    });
  }
});
