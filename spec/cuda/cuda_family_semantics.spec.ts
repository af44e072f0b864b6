/**
 * The families' semantics (docs/semantics.md section 11) in the native CUDA forward (CudaMoeRunner: routing.cu,
 * the SwiGLU epilogue, the permute and the combine) against the float64 reference refFusedMoE, on seeded random
 * shapes and weights: routerBias (every router GEMM variant: few rows, tiled, split-K), clamped SwiGLU with limits
 * that bind, routedScalingFactor on every method, group_limited_greedy (k above the kept experts too),
 * renormalizeEpsilon, zero-computation experts, routingWeightOn 'input', PhiMoE's sparsemixer; then the sparsemixer
 * and group-limited routing of the MoeTopkSelect CUDA kernel against the reference's routing. float32 bound 1e-4
 * (two GEMMs), bfloat16 3e-2; routing weights 1e-5 with ids exact. Pending, with the reason, without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, MoeTopkSelect, registerCudaKernels} from 'tfjs-moe';
import {CudaMoeRunner, CudaMoeWeightArrays} from 'tfjs-moe/internal';

import {randInt, randn, recordError, relError, rng} from '../helpers/util.js';
import {refFusedMoE, RefMoeOptions, refRoute} from '../reference/moe_reference.js';
import {onBackend, registerHostStandIn, TF_BACKEND} from './tensorflow_stand_in.js';

const status = cudaStatus();
const unavailable = status.available ? null : `CUDA unavailable (${status.code}): ${status.reason}`;
const BOUND: Record<CudaComputeDtype, number> = {float32: 1e-4, bfloat16: 3e-2, float16: 5e-3};
// TFJS_MOE_SPEC_SCALE=small (compute-sanitizer runs): one seed, float32, no many-token cases.
const SMALL = process.env.TFJS_MOE_SPEC_SCALE === 'small';

type Opts = Partial<RefMoeOptions>;
interface Case {
  name: string;
  /** Options for the random E (a multiple of 4) and k. */
  opts: (E: number, k: number) => Opts;
  /** Fixed sizes (a router GEMM variant); random otherwise. */
  T?: number;
  H?: number;
  dtypes?: CudaComputeDtype[];
}

const CASES: Case[] = [
  {name: 'routerBias, greedy (few-rows router kernel)', T: 5, H: 64, opts: () => ({routerBias: true})},
  {name: 'routerBias, tiled router (H % 4 != 0), shared gate', T: 21, H: 37,
    opts: () => ({routerBias: true, sharedExpertIntermediateSize: 6, sharedExpertGate: true})},
  {name: 'routerBias, split-K router', T: 70, H: 512, opts: () => ({routerBias: true, topkMethod: 'noaux_tc',
    useCorrectionBias: true, renormalize: false})},
  {name: 'gpt-oss: router bias, clamped SwiGLU, expert biases', opts: () => ({routerBias: true,
    activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: 7, withBias: true}),
  dtypes: ['float32', 'bfloat16']},
  {name: 'clamped SwiGLU, limit 0.3 (both clamps bind), alpha 1.3, probInAdvance, shared (plain)',
    opts: () => ({activation: 'clamped_swiglu', swigluAlpha: 1.3, swigluLimit: 0.3, probInAdvance: true,
      sharedExpertIntermediateSize: 5}), dtypes: ['float32', 'bfloat16']},
  {name: 'clamped SwiGLU on decode (T = 1)', T: 1, H: 64,
    opts: () => ({activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: 0.5, withBias: true})},
  {name: 'greedy, rsf 2.5, renormalizeEpsilon 1e-6', opts: () => ({routedScalingFactor: 2.5, renormalizeEpsilon: 1e-6})},
  {name: 'greedy, not renormalized, rsf 0.4', opts: () => ({routedScalingFactor: 0.4, renormalize: false})},
  {name: 'group_limited_greedy, rsf 16, not renormalized, shared (DeepSeek-V2)',
    opts: () => ({topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 1, renormalize: false,
      routedScalingFactor: 16, sharedExpertIntermediateSize: 5})},
  {name: 'group_limited_greedy, k above the kept experts', opts: E => ({topkMethod: 'group_limited_greedy',
    nGroup: E / 2, topkGroup: 1, topK: 3, renormalize: false})},
  {name: 'group_limited_greedy, renormalized with epsilon 0.5', opts: () => ({topkMethod: 'group_limited_greedy',
    nGroup: 2, topkGroup: 1, renormalizeEpsilon: 0.5})},
  {name: 'noaux_tc one group, bias, renormalizeEpsilon 1e-6, rsf 1.5 (LFM2)',
    opts: () => ({topkMethod: 'noaux_tc', useCorrectionBias: true, renormalizeEpsilon: 1e-6, routedScalingFactor: 1.5})},
  {name: 'zero experts, bias, rsf 1.6, not renormalized (LongCat-Flash)',
    opts: E => ({zeroExperts: Math.max(1, E / 2), useCorrectionBias: true, renormalize: false,
      routedScalingFactor: 1.6}), dtypes: ['float32', 'bfloat16']},
  {name: 'zero experts, k > E possible, noaux_tc groups, biases, probInAdvance, shared',
    opts: E => ({zeroExperts: E, topK: Math.min(E + 1, 6), topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 2,
      useCorrectionBias: true, withBias: true, probInAdvance: true, sharedExpertIntermediateSize: 3})},
  {name: 'zero experts, many tokens (multi-block permute)', T: 300, H: 48, opts: E => ({zeroExperts: 3 * E,
    topK: 4})},
  {name: 'Llama-4: routingWeightOn input, sigmoid one group, not renormalized, shared',
    opts: () => ({routingWeightOn: 'input', topkMethod: 'noaux_tc', renormalize: false,
      sharedExpertIntermediateSize: 5}), dtypes: ['float32', 'bfloat16']},
  {name: 'routingWeightOn input, greedy, latent, router bias',
    opts: () => ({routingWeightOn: 'input', latentSize: 5, routerBias: true})},
  {name: 'routingWeightOn input, zero experts, clamped SwiGLU', opts: E => ({routingWeightOn: 'input', zeroExperts: E,
    activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: 0.4})},
  {name: 'PhiMoE sparsemixer, eps 0.01', opts: () => ({topkMethod: 'sparsemixer', sparsemixerEpsilon: 0.01, topK: 2,
    renormalize: false}), dtypes: ['float32', 'bfloat16']},
  {name: 'sparsemixer, eps 0.3 (wide masks), renormalized, rsf 2, biases', opts: () => ({topkMethod: 'sparsemixer',
    sparsemixerEpsilon: 0.3, topK: 2, routedScalingFactor: 2, withBias: true})},
  {name: 'sparsemixer, many tokens', T: 200, H: 32, opts: () => ({topkMethod: 'sparsemixer', sparsemixerEpsilon: 0.01,
    topK: 2, renormalize: false})},
];

function fullOptions(E: number, k: number, I: number, o: Opts): RefMoeOptions {
  return {numExperts: E, topK: k, intermediateSize: I, topkMethod: 'greedy', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null, withBias: false,
    probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false, ...o};
}

function randomWeights(c: RefMoeOptions, H: number, rand: () => number): CudaMoeWeightArrays {
  const E = c.numExperts, Z = c.zeroExperts ?? 0, I = c.intermediateSize, D = c.latentSize ?? H;
  const S = c.sharedExpertIntermediateSize;
  const w: CudaMoeWeightArrays = {
    gateWeight: randn(rand, H * (E + Z), 0.8), upGateProjWeight: randn(rand, E * D * 2 * I, 0.4),
    downProjWeight: randn(rand, E * I * D, 0.4),
  };
  if (c.routerBias) w.gateBias = randn(rand, E + Z, 0.5);
  if (c.useCorrectionBias) w.gateCorrectionBias = randn(rand, E + Z, 0.2);
  if (c.withBias) {
    w.upGateProjBias = randn(rand, E * 2 * I, 0.2);
    w.downProjBias = randn(rand, E * D, 0.2);
  }
  if (c.latentSize != null) {
    w.fc1LatentProjWeight = randn(rand, H * D, 0.4);
    w.fc2LatentProjWeight = randn(rand, D * H, 0.4);
  }
  if (S > 0) {
    w.sharedUpGateProjWeight = randn(rand, H * 2 * S, 0.4);
    w.sharedDownProjWeight = randn(rand, S * H, 0.4);
    if (c.sharedExpertGate) w.sharedExpertGateWeight = randn(rand, H, 0.4);
  }
  return w;
}

describe('CUDA native forward: the families\' semantics vs the float64 reference', () => {
  CASES.forEach((c, caseIndex) => {
    if (SMALL && (c.T ?? 0) > 100) return;
    for (const dtype of SMALL ? ['float32' as const] : c.dtypes ?? ['float32']) {
      for (const seed of SMALL ? [2] : [1, 2, 3]) {
        it(`${c.name} [${dtype}] (seed ${seed})`, () => {
          if (unavailable) pending(`${unavailable} (runs on the GPU machine)`);
          const rand = rng(104729 * (caseIndex + 1) + seed);
          const E = 4 * randInt(rand, 1, 4);
          const k0 = randInt(rand, 1, Math.min(3, E / 2));
          const H = c.H ?? randInt(rand, 3, 40), I = randInt(rand, 2, 24), T = c.T ?? randInt(rand, 1, 40);
          const o = c.opts(E, k0);
          const cfg = fullOptions(E, o.topK ?? k0, I, o);
          const weights = randomWeights(cfg, H, rand);
          const x = randn(rand, T * H);
          const {intermediateSize, ...rest} = cfg;
          const runner = new CudaMoeRunner({...rest, hidden: H, moeIntermediateSize: intermediateSize,
            routingWeightOn: cfg.routingWeightOn ?? (cfg.probInAdvance ? 'activation' : 'output'),
            computeDtype: dtype}, weights);
          try {
            const y = runner.forward(x, T, seed !== 2);  // seed 2: eager launches, the others a CUDA graph
            const ref = refFusedMoE(x, T, H, weights as never, cfg);
            const err = relError(y, ref);
            recordError(`cuda native semantics [${dtype}]`, err);
            expect(err).withContext(`${c.name}: E=${E} k=${cfg.topK} H=${H} I=${I} T=${T}`).toBeLessThan(BOUND[dtype]);
          } finally {
            runner.dispose();
          }
        });
      }
    }
  });

  it('rejects a sparsemixer config with topK != 2 by name, before any upload', () => {
    if (unavailable) pending(`${unavailable} (runs on the GPU machine)`);
    const H = 4, E = 4, I = 2;
    const cfg = fullOptions(E, 3, I, {topkMethod: 'sparsemixer'});
    expect(() => new CudaMoeRunner({...cfg, hidden: H, moeIntermediateSize: I} as never,
        randomWeights(cfg, H, rng(3)))).toThrowError(/sparsemixer picks exactly 2 experts/);
  });
});

describe('CUDA MoeTopkSelect kernel: sparsemixer and group-limited routing vs the reference', () => {
  beforeAll(() => {
    if (unavailable) return;
    registerHostStandIn(TF_BACKEND);
    registerCudaKernels(TF_BACKEND);
  });
  for (let i = 0; i < (SMALL ? 4 : 24); i++) {
    const sparse = i % 2 === 0;
    it(`${sparse ? 'sparsemixer' : 'group_limited_greedy'} case ${i}`, async () => {
      if (unavailable) pending(`${unavailable} (runs on the GPU machine)`);
      const rand = rng(7001 + i);
      const nGroup = sparse ? 1 : randInt(rand, 2, 4);
      const E = nGroup * randInt(rand, sparse ? 2 : 1, 40);
      const k = sparse ? 2 : randInt(rand, 1, Math.min(E, 6));
      const topkGroup = sparse ? 1 : randInt(rand, 1, nGroup);
      const T = randInt(rand, 1, 50);
      const logits = randn(rand, T * E, 1.5);
      const eps = [0.01, 0.1, 0.5][i % 3];
      const rsf = [1, 2.5][i % 2 === 0 ? (i >> 1) % 2 : 0];
      const renormalize = i % 4 === 1;
      const ref = refRoute(logits, T, {...fullOptions(E, k, 1, {topkMethod: sparse ? 'sparsemixer' : 'group_limited_greedy',
        nGroup, topkGroup, routedScalingFactor: rsf, renormalize, sparsemixerEpsilon: eps}),
        ...(renormalize ? {renormalizeEpsilon: 0} : {})}, null);
      const [ids, weights] = await onBackend(TF_BACKEND, async () => {
        const l = tf.tensor2d(logits, [T, E]);
        const out = tf.engine().runKernel(MoeTopkSelect, {gatingLogits: l}, {topK: k, renormalize,
          renormalizeEpsilon: 0, routedScalingFactor: rsf, nGroup, topkGroup,
          topkMethod: sparse ? 'sparsemixer' : 'greedy', sparsemixerEpsilon: eps}) as tf.Tensor[];
        const r = [await out[0].data() as Int32Array, await out[1].data() as Float32Array] as const;
        tf.dispose([l, ...out]);
        return r;
      });
      expect(Array.from(ids)).withContext(`ids E=${E} k=${k} T=${T}`).toEqual(Array.from(ref.ids));
      const err = relError(weights, ref.weights);
      recordError('cuda MoeTopkSelect sparsemixer / group_limited_greedy weights', err);
      expect(err).toBeLessThan(1e-5);
    });
  }
});
