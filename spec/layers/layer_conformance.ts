/**
 * FusedMoE against the float64 reference (refFusedMoE) for every option and the combinations that matter, on
 * seeded random shapes with every weight randomized. Instantiated per backend/path, e.g.
 * describeLayerConformance('cpu kernels', {backend: 'cpu', layerBackend: 'cpu'}) — a webgpu spec can reuse it.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoEArgs, MoeLayerBackend} from 'tfjs-moe';

import {expectNoLeak, randInt, recordError, relError, rng} from '../helpers/util.js';
import {applyAndRead, randn, randomLayer, referenceOutput} from './layer_util.js';

export interface LayerConformanceOptions {
  /** The tfjs backend to run on. */
  backend: string;
  /** The layer's backend option under test. */
  layerBackend: MoeLayerBackend;
  /** Fewer/smaller cases for slow backends (e.g. SwiftShader). */
  small?: boolean;
  /**
   * Makes the backend available; resolves to null, or to why it cannot be (the specs are then reported pending
   * with that reason), e.g. initWebGPU from the webgpu spec helpers.
   */
  init?: () => Promise<string | null>;
  /** Per-spec timeout (ms) for slow backends; jasmine's default otherwise. */
  timeoutMs?: number;
  /** Why a case cannot run on this backend (the spec is then reported pending with that reason), or null. */
  pendingReason?: (args: Partial<FusedMoEArgs>) => string | null;
}

/** f32 tolerance of the layer: it chains two GEMMs (semantics: < 1e-4 for GEMMs). */
export const LAYER_TOLERANCE = 1e-4;

interface Case {
  name: string;
  /** Options for a given random E (the case may derive groups from it). */
  args: (E: number, k: number) => Partial<FusedMoEArgs>;
  rank3?: boolean;
}

const CASES: Case[] = [
  {name: 'greedy, renormalized', args: () => ({})},
  {name: 'greedy, not renormalized, correction bias', args: () => ({renormalize: false, useCorrectionBias: true})},
  {name: 'noaux_tc, groups, bias, rsf 2.5',
    args: () => ({topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true})},
  {name: 'noaux_tc, one group, no renormalize', args: () => ({topkMethod: 'noaux_tc', renormalize: false})},
  {name: 'latent', args: () => ({latentSize: 6})},
  {name: 'expert biases, probInAdvance off', args: () => ({withBias: true, probInAdvance: false})},
  {name: 'expert biases, probInAdvance on', args: () => ({withBias: true, probInAdvance: true})},
  {name: 'probInAdvance without biases', args: () => ({probInAdvance: true})},
  {name: 'shared experts, ungated', args: () => ({sharedExpertIntermediateSize: 7})},
  {name: 'shared experts, gated', args: () => ({sharedExpertIntermediateSize: 5, sharedExpertGate: true})},
  {name: 'latent + biases + probInAdvance + gated shared', args: () =>
      ({latentSize: 5, withBias: true, probInAdvance: true, sharedExpertIntermediateSize: 6, sharedExpertGate: true})},
  {name: 'everything with noaux_tc', args: () => ({topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1,
    routedScalingFactor: 1.7, useCorrectionBias: true, latentSize: 7, withBias: true, probInAdvance: true,
    sharedExpertIntermediateSize: 4, sharedExpertGate: false})},
  {name: 'greedy, rsf 2.5, renormalizeEpsilon 1e-6',
    args: () => ({routedScalingFactor: 2.5, renormalizeEpsilon: 1e-6})},
  {name: 'group_limited_greedy, not renormalized, rsf 16 (DeepSeek-V2)',
    args: () => ({topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 1, renormalize: false,
      routedScalingFactor: 16, sharedExpertIntermediateSize: 5})},
  {name: 'group_limited_greedy, renormalized with epsilon 0.5',
    args: () => ({topkMethod: 'group_limited_greedy', nGroup: 2, topkGroup: 1, renormalizeEpsilon: 0.5})},
  {name: 'noaux_tc, one group, bias, renormalizeEpsilon 1e-6 (LFM2)',
    args: () => ({topkMethod: 'noaux_tc', useCorrectionBias: true, renormalizeEpsilon: 1e-6,
      routedScalingFactor: 1.5})},
  {name: 'zero experts, bias, rsf 1.6, not renormalized (LongCat-Flash)',
    args: E => ({zeroExperts: Math.max(1, E / 2), useCorrectionBias: true, renormalize: false,
      routedScalingFactor: 1.6})},
  {name: 'zero experts, noaux_tc groups, biases, probInAdvance, shared',
    args: E => ({zeroExperts: E, topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1, useCorrectionBias: true,
      withBias: true, probInAdvance: true, sharedExpertIntermediateSize: 3})},
  {name: 'PhiMoE: sparsemixer eps 0.1, not renormalized',
    args: () => ({topkMethod: 'sparsemixer', topK: 2, sparsemixerEpsilon: 0.1, renormalize: false})},
  {name: 'sparsemixer eps 0.01, renormalized, rsf 1.5, gated shared, expert biases',
    args: () => ({topkMethod: 'sparsemixer', topK: 2, renormalize: true, routedScalingFactor: 1.5,
      sharedExpertIntermediateSize: 4, sharedExpertGate: true, withBias: true})},
  {name: 'gpt-oss: router bias, clamped SwiGLU, expert biases', args: () =>
      ({routerBias: true, activation: 'clamped_swiglu', withBias: true})},
  // A limit below the random activations' spread, so that both clamps bind on many elements.
  {name: 'clamped SwiGLU, alpha 1.3, limit 0.3, probInAdvance, gated shared (plain SwiGLU)', args: () =>
      ({activation: 'clamped_swiglu', swigluAlpha: 1.3, swigluLimit: 0.3, probInAdvance: true, routerBias: true,
        sharedExpertIntermediateSize: 5, sharedExpertGate: true})},
  {name: 'Llama-4: routingWeightOn input, sigmoid one group, not renormalized, shared expert', args: () =>
      ({routingWeightOn: 'input', topkMethod: 'noaux_tc', renormalize: false, sharedExpertIntermediateSize: 5})},
  {name: 'routingWeightOn input, greedy, latent, router bias', args: () =>
      ({routingWeightOn: 'input', latentSize: 5, routerBias: true})},
  {name: 'routingWeightOn activation (= probInAdvance), expert biases', args: () =>
      ({routingWeightOn: 'activation', withBias: true})},
  {name: '3-D input [B,S,H]', args: () => ({withBias: true, sharedExpertIntermediateSize: 3}), rank3: true},
  {name: '3-D input, noaux_tc + latent', rank3: true,
    args: () => ({topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 2, latentSize: 4, useCorrectionBias: true})},
];

export function describeLayerConformance(label: string, opts: LayerConformanceOptions): void {
  describe(`FusedMoE vs float64 reference [${label}]`, () => {
    let previousBackend = '';
    let skipReason: string | null = null;
    beforeAll(async () => {
      previousBackend = tf.getBackend();
      skipReason = opts.init ? await opts.init() : null;
      if (skipReason == null && !await tf.setBackend(opts.backend)) {
        throw new Error(`backend '${opts.backend}' failed to initialise`);
      }
    });
    afterAll(async () => {
      await tf.setBackend(previousBackend);
    });
    beforeEach(() => {
      if (skipReason != null) {
        pending(`${opts.backend} unavailable: ${skipReason} (runs where that backend exists: webgpu via dawn.node/` +
            'SwiftShader, cuda on the GPU machine)');
      }
    });

    CASES.forEach((c, caseIndex) => {
      const seeds = opts.small ? [1] : [1, 2, 3];
      for (const seed of seeds) {
        it(`${c.name} (seed ${seed})`, async () => {
          const rand = rng(7919 * (caseIndex + 1) + seed);
          // E a multiple of 4 so every grouped case divides; k within the noaux_tc candidate count.
          const E = 4 * randInt(rand, 1, opts.small ? 2 : 4);
          const k = randInt(rand, 1, Math.min(3, E / 2));
          const H = randInt(rand, 3, opts.small ? 10 : 20), I = randInt(rand, 2, opts.small ? 6 : 12);
          const T = randInt(rand, 1, opts.small ? 6 : 17);
          const args: FusedMoEArgs = {numExperts: E, topK: k, moeIntermediateSize: I, backend: opts.layerBackend,
            ...c.args(E, k)};
          const reason = opts.pendingReason?.(args) ?? null;
          if (reason != null) pending(reason);
          const {layer, data} = randomLayer(args, H, rand);
          try {
            const x = randn(rand, T * H);
            const shape = c.rank3 ? splitTokens(T, H) : [T, H];
            expect(layer.selectedPath()).toBe(
                opts.layerBackend === 'composite' ? `composite:${opts.backend}` :
                ['auto', 'cpu', 'webgpu'].includes(opts.layerBackend) ? `kernels:${opts.backend}` :
                                                                         `executor:${opts.layerBackend}`);
            const actual = await expectNoLeak(() => applyAndRead(layer, x, shape));
            const expected = referenceOutput(layer.options, data, x, T, H);
            const err = relError(actual, expected);
            recordError(`FusedMoE [${label}]`, err);
            expect(err).withContext(`relative error, E=${E} k=${k} H=${H} I=${I} T=${T}`).toBeLessThan(LAYER_TOLERANCE);
          } finally {
            layer.dispose();
          }
        }, opts.timeoutMs);
      }
    });
  });
}

/** A [B,S,H] shape with B*S = T (B > 1 when T allows it). */
function splitTokens(T: number, H: number): number[] {
  for (let b = 2; b <= T; b++) if (T % b === 0) return [b, T / b, H];
  return [1, T, H];
}
