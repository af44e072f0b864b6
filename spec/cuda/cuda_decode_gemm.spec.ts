/**
 * The decode-size weight-streaming GEMM (src/kernels/cuda/gemm_stream.cuh: a few rows per expert, CUDA cores, the
 * shared epilogue) through the whole layer in bfloat16 and float16, against the float64 reference and against the
 * tensor-core 16-row tiles of the default choice, in both its widths (MOE_CUDA_GEMM_TILES 'stream' = 4 columns
 * per warp, 'stream8'), and the narrower 16 x 32 tensor-core decode tiles ('mma32'). Shapes reach: one row per expert (T = 1), segments longer than one pass of 4 rows and
 * longer than one 16-row tile (a router that sends most tokens to one expert), partial column tiles (H = 200),
 * biases, probInAdvance, a gated shared expert (dense problem), latent projections; and the token-owned down GEMM
 * that applies the weighted combine itself (T * k * 8 <= E: T = 1, 2 of a 128-expert top-8 layer), whose
 * 'default' comparison is the separate down GEMM + combine kernel. The decode fusions (MOE_CUDA_FUSE: router GEMM +
 * routing + permute in one kernel at T <= 16, the combine in the down GEMM's last tile per column at T <= 32) and
 * the deeper decode pipelines ('deep', 'k128') are checked against the reference and must equal the unfused /
 * default output exactly (the same sums in the same order), as must the down GEMM's L2 prefetch of its weights
 * under programmatic dependent launch (TFJS_MOE_CUDA_L2_PREFETCH=1), the default L2 prefetch of the down weights by
 * the up_gate GEMM (TFJS_MOE_CUDA_L2_PREFETCH=0 turns it off) and the down GEMM's weight loads issued before its wait
 * (MOE_CUDA_GEMM_TILES 'no-preload' turns them off); all of that with the combine kernel
 * (TFJS_MOE_CUDA_DECODE_COMBINE=kernel, the default), and then the option TFJS_MOE_CUDA_DECODE_COMBINE=add, where
 * the down GEMM adds its rows into the output with float32 atomics (the same terms in an order that can change:
 * within 1e-6); the session-9 switches TFJS_MOE_CUDA_DECODE_FRONT=route2 (routing + permute in one block after the
 * router GEMM) and TFJS_MOE_CUDA_DECODE_COMBINE=tail (the combine tail without MOE_CUDA_FUSE) exactly. Pending
 * without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MOE_CUDA_FUSE, MOE_CUDA_GEMM_TILES} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refFusedMoE, RefMoeConfig, RefMoeWeights} from '../reference/moe_reference.js';

import {randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();
const BOUND: Record<string, number> = {bfloat16: 3e-2, float16: 5e-3};
// Streaming vs tensor-core tiles: the same half-precision products summed in float32 in another order; the
// SwiGLU output is rounded to the compute dtype, so a rare element may differ by one of its ulps.
const AGREE: Record<string, number> = {bfloat16: 1e-2, float16: 2e-3};

function config(over: Partial<RefMoeConfig> & {numExperts: number, topK: number, intermediateSize: number}): RefMoeConfig {
  return {
    topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false,
    latentSize: null, withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false,
    ...over,
  };
}

interface Case {name: string, T: number, H: number, cfg: RefMoeConfig, skewed?: boolean}

// Expected rows per expert (2 R / min(E, R)) stays <= 2 in every case, so the layer picks the streaming GEMM.
const CASES: Case[] = [
  {name: 'T = 1, one row per expert', T: 1, H: 256, cfg: config({numExperts: 32, topK: 4, intermediateSize: 64})},
  {name: 'T = 3, biases, probInAdvance, partial column tile', T: 3, H: 200,
    cfg: config({numExperts: 16, topK: 4, intermediateSize: 52, withBias: true, probInAdvance: true})},
  {name: 'T = 32, skewed router: a 20+ row segment (several passes, two row tiles)', T: 32, H: 128,
    cfg: config({numExperts: 64, topK: 2, intermediateSize: 48}), skewed: true},
  // R * 8 <= E: the down GEMM is token-owned and applies the weighted combine (and the weighted down bias) itself.
  {name: 'T = 2, token-owned down GEMM + combine: biases, probInAdvance', T: 2, H: 136,
    cfg: config({numExperts: 64, topK: 2, intermediateSize: 40, withBias: true, probInAdvance: true})},
  {name: 'T = 1, token-owned down GEMM + combine: latent projections, gated shared expert', T: 1, H: 96,
    cfg: config({numExperts: 16, topK: 2, intermediateSize: 40, latentSize: 64, sharedExpertIntermediateSize: 72,
      sharedExpertGate: true})},
  // noaux_tc (sigmoid) with groups of >= 32 experts: the warp finds each group's top two together (one group of 64,
  // Llama-4 / LFM2 style; two groups of 32, DeepSeek style), inside the fused route kernel at T <= 16.
  {name: 'T = 1, noaux_tc one group of 64 + correction bias', T: 1, H: 128,
    cfg: config({numExperts: 64, topK: 4, intermediateSize: 40, topkMethod: 'noaux_tc', useCorrectionBias: true,
      routedScalingFactor: 2.5})},
  {name: 'T = 13, noaux_tc two groups of 32, one kept', T: 13, H: 128,
    cfg: config({numExperts: 64, topK: 4, intermediateSize: 40, topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1,
      useCorrectionBias: true})},
  // K = 1040 (up_gate): several 128-deep K steps, the last one partial.
  {name: 'T = 1, H = 1040: several K steps, the last one partial', T: 1, H: 1040,
    cfg: config({numExperts: 32, topK: 4, intermediateSize: 64})},
  {name: 'T = 2, gated shared expert and latent projections', T: 2, H: 96,
    cfg: config({numExperts: 16, topK: 2, intermediateSize: 40, latentSize: 64, sharedExpertIntermediateSize: 72,
      sharedExpertGate: true})},
];

function randomWeights(rand: () => number, H: number, c: Case): Record<string, Float32Array> {
  const w = randomMoeWeights(rand, H, c.cfg);
  if (c.skewed) {
    // Column 0 of the router gets a large weight on every input feature: with x > 0 it wins for most tokens.
    for (let h = 0; h < H; h++) w.gateWeight[h * c.cfg.numExperts] = 0.5;
  }
  return w;
}

describe('CUDA decode weight-streaming GEMM', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  for (const dtype of ['bfloat16', 'float16'] as CudaComputeDtype[]) {
    for (const [ci, c] of CASES.entries()) {
      it(`${c.name} [${dtype}]: streaming (4 and 8 columns per warp) vs the reference and vs tensor-core tiles`,
         async () => {
           const rand = rng(4200 + ci);
           const w = randomWeights(rand, c.H, c);
           const weights = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as
               CudaMoeWeightTensors;
           const x = c.skewed ? Float32Array.from(randn(rand, c.T * c.H), v => Math.abs(v)) : randn(rand, c.T * c.H);
           const ref = refFusedMoE(x, c.T, c.H, w as unknown as RefMoeWeights, c.cfg);
           const xT = tf.tensor2d(x, [c.T, c.H]);
           const layer = new CudaFusedMoe({hidden: c.H, ...c.cfg, computeDtype: dtype});
           const env = tf.env();
           const before = tf.memory().numTensors;
           const outs: Record<string, Float32Array> = {};
           try {
             // The third entry sets TFJS_MOE_CUDA_L2_PREFETCH: '0' no L2 prefetch, '1' the down GEMM's own (with the
             // combine tail); unset, the default: the up_gate GEMM asks L2 for the down weights of its experts.
             const variants: Array<[string, string, string?]> = [
               ['default', 'none'], ['stream', 'none'], ['stream8', 'none'], ['mma32', 'none'], ['deep', 'none'],
               ['k128', 'none'], ['shallow', 'none'], ['default', 'all'], ['default', 'route'], ['default', 'combine'],
               ['stream', 'all'], ['default', 'all', '1'], ['no-preload', 'none'], ['default', 'none', '0'],
               ['no-preload', 'none', '0'],
             ];
             // The variants with the combine kernel (slot order, the default: the exact comparisons below); the
             // option of the down GEMM adding its rows into the output with float32 atomics is checked after them.
             process.env.TFJS_MOE_CUDA_DECODE_COMBINE = 'kernel';
             for (const [tiles, fuse, prefetch] of variants) {
               env.set(MOE_CUDA_GEMM_TILES, tiles);
               env.set(MOE_CUDA_FUSE, fuse);
               if (prefetch === undefined) delete process.env.TFJS_MOE_CUDA_L2_PREFETCH;
               else process.env.TFJS_MOE_CUDA_L2_PREFETCH = prefetch;
               const name = `${tiles}${fuse === 'none' ? '' : `/${fuse}`}${prefetch ? `/prefetch${prefetch}` : ''}`;
               for (let call = 0; call < 2; call++) {  // the second call replays the CUDA graph
                 const out = layer.apply(xT, weights);
                 outs[name] = (await out.data()) as Float32Array;
                 out.dispose();
                 const err = relError(outs[name], ref);
                 recordError(`cuda decode GEMM ${dtype}`, err);
                 expect(err).withContext(`${name} call ${call}`).toBeLessThan(BOUND[dtype]);
               }
             }
             process.env.TFJS_MOE_CUDA_DECODE_COMBINE = 'add';
             env.set(MOE_CUDA_GEMM_TILES, 'default');
             env.set(MOE_CUDA_FUSE, 'none');
             delete process.env.TFJS_MOE_CUDA_L2_PREFETCH;
             for (let call = 0; call < 2; call++) {
               const out = layer.apply(xT, weights);
               const added = (await out.data()) as Float32Array;
               out.dispose();
               expect(relError(added, ref)).withContext(`combine in the down GEMM, call ${call}`).toBeLessThan(BOUND[dtype]);
               expect(relError(added, outs.default)).withContext(`combine in the down GEMM vs kernel, call ${call}`)
                   .toBeLessThan(1e-6);
             }
             // The session-9 decode switches: TFJS_MOE_CUDA_DECODE_FRONT=route2 (routing + permute as one block after
             // the router GEMM, T <= 16) and TFJS_MOE_CUDA_DECODE_COMBINE=tail (the combine tail, its four-column
             // loads where rows are 16-byte aligned): the routing kernels' and the combine kernel's sums.
             const FRONT = 'TFJS_MOE_CUDA_DECODE_FRONT', COMBINE = 'TFJS_MOE_CUDA_DECODE_COMBINE';
             for (const sw of [{[FRONT]: 'route2', [COMBINE]: 'kernel'}, {[COMBINE]: 'tail'},
               {[FRONT]: 'route2', [COMBINE]: 'tail'}, {[FRONT]: 'route2:1', [COMBINE]: 'tail:2'}]) {
               Object.assign(process.env, sw);
               try {
                 for (let call = 0; call < 2; call++) {
                   const out = layer.apply(xT, weights);
                   const o = (await out.data()) as Float32Array;
                   out.dispose();
                   const name = `${JSON.stringify(sw)} call ${call}`;
                   expect(relError(o, ref)).withContext(name).toBeLessThan(BOUND[dtype]);
                   expect(relError(o, outs.default)).withContext(`${name} vs default`).toBe(0);
                 }
               } finally {
                 delete process.env[FRONT];
                 process.env[COMBINE] = 'add';
               }
             }
             // The fusions change no sum: the route kernel runs the routing kernels' code, the combine tail the
             // combine kernel's; the prefetch only asks L2 early. The pipeline depths may pad K with more zero steps.
             // 'no-preload' only moves the down GEMM's first weight loads after its wait.
             for (const name of ['default/all', 'default/route', 'default/combine', 'default/all/prefetch1',
               'default/prefetch0', 'no-preload', 'no-preload/prefetch0']) {
               expect(relError(outs[name], outs.default)).withContext(`${name} vs default`).toBe(0);
             }
             for (const name of ['deep', 'k128', 'shallow']) {
               expect(relError(outs[name], outs.default)).withContext(`${name} vs default`).toBeLessThan(1e-6);
             }
             expect(relError(outs['stream/all'], outs.stream)).withContext('stream fused vs unfused').toBe(0);
             expect(relError(outs.stream, outs.default)).withContext('4 columns vs mma').toBeLessThan(AGREE[dtype]);
             expect(relError(outs.stream8, outs.default)).withContext('8 columns vs mma').toBeLessThan(AGREE[dtype]);
             expect(relError(outs.mma32, outs.default)).withContext('16x32 vs 16x64 tiles').toBeLessThan(AGREE[dtype]);
             expect(tf.memory().numTensors).toBe(before);
           } finally {
             env.set(MOE_CUDA_GEMM_TILES, 'default');
             env.set(MOE_CUDA_FUSE, 'none');
             delete process.env.TFJS_MOE_CUDA_L2_PREFETCH;
             delete process.env.TFJS_MOE_CUDA_DECODE_COMBINE;
             layer.dispose();
             xT.dispose();
             tf.dispose(Object.values(weights) as tf.Tensor[]);
           }
         });
    }
  }
});
