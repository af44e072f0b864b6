/**
 * The routing options of docs/semantics.md section 11 on the routing ops, against the float64 reference's
 * refRoute (the layer-level routing of spec/reference): routedScalingFactor on softmax routing, group-limited
 * softmax routing (nGroup / topkGroup of moeTopkSelect, DeepSeek-V2), renormalizeEpsilon on both ops and PhiMoE's
 * sparsemixer (moeTopkSelect's topkMethod, section 11.8).
 * Logits are distinct grid values, so the ids compare exactly: the only ties are the zeros of dropped groups,
 * which go to the lower expert index in both.
 */
import * as tf from '@tensorflow/tfjs-core';
import {getMoeScores, moeTopkSelect} from 'tfjs-moe';

import {refRoute, RefMoeOptions} from '../../reference/moe_reference.js';
import {expectNoLeak, expectThrowsNoLeak, randInt, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectSameInts, expectShape, pick, randTokens, readF32, readI32, TOL, uniformF32,
  withInputs} from './context.js';

export interface RoutingOptionsCase {
  method: 'greedy' | 'group_limited_greedy' | 'noaux_tc' | 'sparsemixer';
  logits: Float32Array;
  T: number;
  E: number;
  k: number;
  nGroup: number;
  topkGroup: number;
  rsf: number;
  renormalize: boolean;
  eps: number | null;
  bias: Float32Array | null;
  /** sparsemixer only. */
  sparsemixerEpsilon?: number;
}

/**
 * sparsemixer thresholds 2 * eps far (>= 1.5e-3) from every ratio (m - l) / max(|l|, m) of grid logits (ratios of
 * small integers), so float32 and float64 mask the same experts.
 */
const SPARSEMIXER_EPSILONS = [0.0137, 0.0611, 0.1733, 0.41, 3];

export function describeCase(c: RoutingOptionsCase): string {
  return `${c.method} T=${c.T} E=${c.E} k=${c.k} G=${c.nGroup} Gk=${c.topkGroup} rsf=${c.rsf} ` +
      `renormalize=${c.renormalize} eps=${c.eps} bias=${c.bias != null}` +
      (c.method === 'sparsemixer' ? ` sparsemixerEpsilon=${c.sparsemixerEpsilon}` : '');
}

/** Each row a shuffled grid of distinct logits (step >= 0.05: no near ties between float32 and float64). */
export function gridLogits(rand: () => number, T: number, E: number): Float32Array {
  const out = new Float32Array(T * E);
  for (let t = 0; t < T; t++) {
    const order = Array.from({length: E}, (_, e) => e);
    for (let i = E - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const step = 0.05 + rand() * 0.3;
    for (let e = 0; e < E; e++) out[t * E + e] = (order[e] - E / 2) * step;
  }
  return out;
}

export function randomCase(seed: number, maxT: number): RoutingOptionsCase {
  const rand = rng(seed);
  const method = pick(rand, ['greedy', 'group_limited_greedy', 'noaux_tc', 'sparsemixer'] as const);
  const T = randTokens(rand, maxT);
  if (method === 'sparsemixer') {
    const E = randInt(rand, 2, 12);
    return {method, logits: gridLogits(rand, T, E), T, E, k: 2, nGroup: 1, topkGroup: 1,
      rsf: pick(rand, [1, 2.5, 0.4]), renormalize: rand() < 0.3, eps: pick(rand, [null, 1e-6, 0.25]), bias: null,
      sparsemixerEpsilon: pick(rand, SPARSEMIXER_EPSILONS)};
  }
  const nGroup = method === 'greedy' ? 1 : randInt(rand, 1, 4);
  const E = nGroup * randInt(rand, 1, 5);
  const topkGroup = randInt(rand, 1, nGroup);
  // group_limited_greedy may ask for more experts than the kept groups hold (those slots weigh 0).
  const maxK = method === 'noaux_tc' ? topkGroup * (E / nGroup) : E;
  const k = randInt(rand, 1, Math.min(maxK, 6));
  return {method, logits: gridLogits(rand, T, E), T, E, k, nGroup, topkGroup, rsf: pick(rand, [1, 2.5, 16, 0.4]),
    renormalize: rand() < 0.6, eps: pick(rand, [null, 1e-6, 0.25]),
    bias: method === 'noaux_tc' && rand() < 0.5 ? uniformF32(rand, E, -0.3, 0.3) : null};
}

export function reference(c: RoutingOptionsCase, logits: ArrayLike<number> = c.logits):
    {ids: Int32Array, weights: Float64Array} {
  const cfg = {numExperts: c.E, topK: c.k, topkMethod: c.method, nGroup: c.nGroup, topkGroup: c.topkGroup,
    routedScalingFactor: c.rsf, renormalize: c.renormalize, sparsemixerEpsilon: c.sparsemixerEpsilon,
    ...(c.eps === null ? {} : {renormalizeEpsilon: c.eps})} as RefMoeOptions;
  return refRoute(logits, c.T, cfg, c.bias);
}

export function route(c: RoutingOptionsCase, logits: tf.Tensor2D, bias: tf.Tensor1D | null):
    {topkIds: tf.Tensor2D, topkWeights: tf.Tensor2D} {
  if (c.method === 'noaux_tc') {
    const {scores, topkIds, topkWeights} =
        getMoeScores(logits, c.nGroup, c.topkGroup, c.k, c.rsf, bias, c.renormalize, c.eps);
    scores.dispose();
    return {topkIds, topkWeights};
  }
  const sparsemixer = c.method === 'sparsemixer' ?
      {topkMethod: 'sparsemixer' as const, sparsemixerEpsilon: c.sparsemixerEpsilon} : {};
  return moeTopkSelect(logits, bias, c.k, c.renormalize,
      {routedScalingFactor: c.rsf, nGroup: c.nGroup, topkGroup: c.topkGroup, renormalizeEpsilon: c.eps, ...sparsemixer});
}

async function runCase(ctx: ConformanceContext, c: RoutingOptionsCase): Promise<void> {
  await expectNoLeak(async () => {
    const logitsT = tf.tensor2d(c.logits, [c.T, c.E]);
    const biasT = c.bias ? tf.tensor1d(c.bias) : null;
    const {ids, weights} = await withInputs([logitsT, biasT], async () => {
      const {topkIds, topkWeights} = ctx.call(() => route(c, logitsT, biasT));
      expectShape(topkIds, [c.T, c.k], 'topkIds');
      expectShape(topkWeights, [c.T, c.k], 'topkWeights');
      return {ids: await readI32(topkIds), weights: await readF32(topkWeights)};
    });
    const ref = reference(c);
    expectSameInts(ids, ref.ids, `topkIds (${describeCase(c)})`);
    const op = c.method === 'noaux_tc' ? 'getMoeScores' : 'moeTopkSelect';
    ctx.expectClose(op, weights, ref.weights, TOL.routing, `topkWeights (${describeCase(c)})`);
  });
}

export function describeRoutingOptionsConformance(ctx: ConformanceContext): void {
  describe('routing options (routedScalingFactor, group_limited_greedy, renormalizeEpsilon, sparsemixer)', () => {
    const n = ctx.cases(60, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('routingOptions', i);
      const c = randomCase(seed, ctx.full ? 24 : 4);
      it(`random case seed=${seed} ${describeCase(c)}`, () => runCase(ctx, c));
    }

    it('group_limited_greedy: k above the kept experts picks dropped ones (lowest index first) at weight 0', async () => {
      const rand = rng(5);
      // 3 groups of 2, one kept, k = 4: two kept experts, then the two lowest-index dropped experts.
      const c: RoutingOptionsCase = {method: 'group_limited_greedy', logits: gridLogits(rand, 3, 6), T: 3, E: 6, k: 4,
        nGroup: 3, topkGroup: 1, rsf: 2, renormalize: false, eps: null, bias: null};
      await runCase(ctx, c);
      await runCase(ctx, {...c, renormalize: true, eps: 1e-6});
    });

    it('sparsemixer: random shapes and thresholds', async () => {
      for (let i = 0; i < ctx.cases(16, 2); i++) {
        const rand = rng(caseSeed('sparsemixer', i));
        const T = randTokens(rand, ctx.full ? 24 : 4), E = randInt(rand, 2, ctx.full ? 40 : 9);
        await runCase(ctx, {method: 'sparsemixer', logits: gridLogits(rand, T, E), T, E, k: 2, nGroup: 1, topkGroup: 1,
          rsf: pick(rand, [1, 2.5]), renormalize: rand() < 0.3, eps: null, bias: null,
          sparsemixerEpsilon: pick(rand, SPARSEMIXER_EPSILONS)});
      }
    });

    it('sparsemixer edge rows: ties, zeros (0 / 0 does not mask), negative maxima, NaN and infinite logits', async () => {
      const rows = [[0, 0, 0, 0], [1, 1, -2, 0.5], [-1, -2, -3, -1.1], [NaN, 1, 2, 3], [NaN, NaN, NaN, NaN],
        [Infinity, 1, 2, 0], [-Infinity, 1, 2, 0.5], [3, -Infinity, -Infinity, -Infinity]];
      const c: RoutingOptionsCase = {method: 'sparsemixer', logits: Float32Array.from(rows.flat()), T: rows.length,
        E: 4, k: 2, nGroup: 1, topkGroup: 1, rsf: 1, renormalize: false, eps: null, bias: null, sparsemixerEpsilon: 0.1};
      await runCase(ctx, c);
      // The reference's own reading of the first rows, so that the case cannot pass on a wrong reference.
      const {ids, weights} = reference(c);
      expect(Array.from(ids.slice(0, 6))).toEqual([0, 1, 0, 1, 0, 3]);
      expect(weights[0]).toBeCloseTo(1 / 4, 12);  // all zeros: nothing masked, plain softmaxes
      expect(weights[1]).toBeCloseTo(1 / 3, 12);
      expect(Number.isNaN(weights[6]) && Number.isNaN(weights[7])).toBeTrue();  // a NaN logit: NaN weights
      await runCase(ctx, {...c, renormalize: true, rsf: 2.5});
    });

    it('rejects bad routing options by name', () => {
      const logits = tf.zeros([2, 4]) as tf.Tensor2D;
      const bias = tf.zeros([4]) as tf.Tensor1D;
      try {
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, true, {nGroup: 3}), /'nGroup'.*divisor/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, true, {nGroup: 2, topkGroup: 3}), /'topkGroup'/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, bias, 2, true, {nGroup: 2}), /'bias'.*nGroup > 1/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, true, {routedScalingFactor: NaN}),
            /'routedScalingFactor'.*finite/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, true, {renormalizeEpsilon: -1}),
            /'renormalizeEpsilon'.*>= 0/);
        expectThrowsNoLeak(
            () => moeTopkSelect(logits, null, 2, true, {epsilon: 1} as unknown as {renormalizeEpsilon: number}),
            /'options'.*key 'epsilon'/);
        expectThrowsNoLeak(() => getMoeScores(logits, 1, 1, 2, 1, null, true, Infinity), /'renormalizeEpsilon'/);
        const sparsemixer = {topkMethod: 'sparsemixer' as const};
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 3, false, sparsemixer), /'topK' must be 2 with topkMethod 'sparsemixer'/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, bias, 2, false, sparsemixer), /'bias' must be null with topkMethod 'sparsemixer'/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, false, {...sparsemixer, nGroup: 2}), /'nGroup' must be 1/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, false, {...sparsemixer, sparsemixerEpsilon: -0.1}),
            /'sparsemixerEpsilon' must be a finite number >= 0/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, false, {...sparsemixer, sparsemixerEpsilon: NaN}),
            /'sparsemixerEpsilon' must be a finite number/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, false, {sparsemixerEpsilon: 0.1}),
            /'sparsemixerEpsilon' must be absent unless topkMethod is 'sparsemixer'/);
        expectThrowsNoLeak(() => moeTopkSelect(logits, null, 2, false,
            {topkMethod: 'noaux_tc'} as unknown as {topkMethod: 'greedy'}), /'topkMethod' must be 'greedy' or 'sparsemixer', got/);
      } finally {
        tf.dispose([logits, bias]);
      }
    });
  });
}
