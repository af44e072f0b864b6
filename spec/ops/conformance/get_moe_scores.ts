/** getMoeScores (docs/semantics.md section 2, noaux_tc) against the float64 reference. */
import * as tf from '@tensorflow/tfjs-core';
import {getMoeScores} from 'tfjs-moe';

import {refGetMoeScores} from '../../reference/moe_reference.js';
import {expectNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectSameInts, expectShape, pick, randTokens, readF32, readI32, TOL, uniformF32, withInputs} from './context.js';
import {checkGroupedSelection, groupedWeightsFor} from './routing_checks.js';

const OP = 'getMoeScores';

interface ScoresCase {
  logits: Float32Array;
  T: number;
  E: number;
  nGroup: number;
  topkGroup: number;
  k: number;
  rsf: number;
  bias: Float32Array | null;
  renormalize: boolean;
}

function describeCase(c: ScoresCase): string {
  return `T=${c.T} E=${c.E} nGroup=${c.nGroup} topkGroup=${c.topkGroup} k=${c.k} rsf=${c.rsf} ` +
      `bias=${c.bias != null} renormalize=${c.renormalize}`;
}

async function runScoresCase(ctx: ConformanceContext, c: ScoresCase, strictIds: boolean): Promise<void> {
  const {logits, T, E, nGroup, topkGroup, k, rsf, bias, renormalize} = c;
  await expectNoLeak(async () => {
    const logitsT = tf.tensor2d(logits, [T, E]);
    const biasT = bias ? tf.tensor1d(bias) : null;
    const {scores, weights, ids} = await withInputs([logitsT, biasT], async () => {
      const out = ctx.call(() => getMoeScores(logitsT, nGroup, topkGroup, k, rsf, biasT, renormalize));
      expectShape(out.scores, [T, E], 'scores');
      expectShape(out.topkWeights, [T, k], 'topkWeights');
      expectShape(out.topkIds, [T, k], 'topkIds');
      const scores = await readF32(out.scores);
      const weights = await readF32(out.topkWeights);
      const ids = await readI32(out.topkIds);
      return {scores, weights, ids};
    });

    const ref = refGetMoeScores(logits, T, E, nGroup, topkGroup, k, rsf, bias, renormalize);
    ctx.expectClose(OP, scores, ref.scores, TOL.routing, `scores (${describeCase(c)})`);
    if (strictIds) {
      expectSameInts(ids, ref.ids, 'topkIds');
      ctx.expectClose(OP, weights, ref.weights, TOL.routing, `topkWeights (${describeCase(c)})`);
    } else {
      const sel = checkGroupedSelection(ids, ref, T, E, k, nGroup, topkGroup);
      expect(sel.failure).withContext(`topkIds vs reference (${describeCase(c)})`).toBeNull();
      ctx.expectClose(OP, weights, groupedWeightsFor(ids, ref, T, E, k, rsf, renormalize), TOL.routing,
          `topkWeights (${describeCase(c)})`);
    }
  });
}

function randomScoresCase(seed: number, maxT: number, maxGroups: number, maxGroupSize: number): ScoresCase {
  const rand = rng(seed);
  const T = randTokens(rand, maxT);
  const nGroup = randInt(rand, 1, maxGroups);
  const E = nGroup * randInt(rand, 1, maxGroupSize);
  const topkGroup = randInt(rand, 1, nGroup);
  const k = randInt(rand, 1, Math.min(E, topkGroup * (E / nGroup), 8));
  const logits = randn(rand, T * E, pick(rand, [0.5, 2, 4]));
  if (rand() < 0.25) for (let i = 0; i < logits.length; i++) logits[i] = Math.round(logits[i] * 2) / 2;
  const bias = rand() < 0.6 ? uniformF32(rand, E, -0.3, 0.3) : null;
  const rsf = pick(rand, [1, 2.5, 0.75, 16]);
  return {logits, T, E, nGroup, topkGroup, k, rsf, bias, renormalize: rand() < 0.7};
}

export function describeGetMoeScoresConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(120, 5);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = randomScoresCase(seed, ctx.full ? 40 : 6, 8, ctx.full ? 8 : 4);
      it(`random case seed=${seed} ${describeCase(c)}`, () => runScoresCase(ctx, c, false));
    }

    it('DeepSeek-V3 routing shape (E=256, G=8, Gk=4, k=8, rsf 2.5) on a few tokens', async () => {
      const rand = rng(7);
      const T = ctx.full ? 9 : 2;
      await runScoresCase(ctx, {logits: randn(rand, T * 256, 2), T, E: 256, nGroup: 8, topkGroup: 4, k: 8, rsf: 2.5,
        bias: uniformF32(rand, 256, -0.05, 0.05), renormalize: true}, false);
    });

    it('exact ties: equal groups keep the lower group, equal experts the lower index', async () => {
      // Groups {0,1} {2,3} {4,5} {6,7}: groups 1 and 3 tie for best; group 1 must be kept.
      const logits = Float32Array.from([0, 1, 2, 2, 0, 1, 2, 2, /* all equal */ 1, 1, 1, 1, 1, 1, 1, 1]);
      for (const renormalize of [true, false]) {
        await runScoresCase(ctx, {logits, T: 2, E: 8, nGroup: 4, topkGroup: 1, k: 2, rsf: 1, bias: null, renormalize},
            true);
        await runScoresCase(ctx, {logits, T: 2, E: 8, nGroup: 4, topkGroup: 2, k: 3, rsf: 2.5, bias: null, renormalize},
            true);
      }
    });

    it('a group of one expert scores that expert alone; nGroup = 1 is plain top-k', async () => {
      const rand = rng(21);
      const logits = randn(rand, 4 * 6, 2);
      await runScoresCase(ctx, {logits, T: 4, E: 6, nGroup: 6, topkGroup: 3, k: 2, rsf: 1,
        bias: uniformF32(rand, 6, -0.2, 0.2), renormalize: true}, false);
      await runScoresCase(ctx, {logits, T: 4, E: 6, nGroup: 1, topkGroup: 1, k: 6, rsf: 1.5, bias: null,
        renormalize: false}, false);
    });

    it('the bias steers selection only: weights come from the un-biased scores', async () => {
      // Expert 0 has the largest logit, but the bias moves the choice to experts 2 and 3 of group 1.
      const logits = Float32Array.from([3, 2, -1, -1.5]);
      await runScoresCase(ctx, {logits, T: 1, E: 4, nGroup: 2, topkGroup: 1, k: 2, rsf: 2,
        bias: Float32Array.from([0, 0, 2, 2]), renormalize: false}, true);
    });

    it('experts outside kept groups are -inf, not 0: all-negative candidates still come from kept groups', async () => {
      // b = sigmoid - 2 < 0 everywhere. HF's 0.0 mask would pick masked experts; the doc's -inf does not.
      const logits = Float32Array.from([4, 3, -4, -3, 0, 0]);
      await runScoresCase(ctx, {logits, T: 1, E: 6, nGroup: 3, topkGroup: 1, k: 2, rsf: 1,
        bias: new Float32Array(6).fill(-2), renormalize: true}, true);
    });

    it('all-NaN logits (or bias) fall back to ids 0..k-1 with weights 1/k; other rows are unaffected', async () => {
      const rand = rng(5);
      const E = 8;
      const logits = randn(rand, 3 * E, 2);
      for (let e = 0; e < E; e++) logits[E + e] = NaN;
      await runScoresCase(ctx, {logits, T: 3, E, nGroup: 4, topkGroup: 2, k: 3, rsf: 2.5, bias: null,
        renormalize: true}, true);
      await runScoresCase(ctx, {logits: randn(rand, 2 * E), T: 2, E, nGroup: 2, topkGroup: 1, k: 2, rsf: 1,
        bias: new Float32Array(E).fill(NaN), renormalize: false}, true);
    });

    it('a single expert (E = 1, nGroup = 1, k = 1)', async () => {
      const rand = rng(23);
      for (const renormalize of [true, false]) {
        await runScoresCase(ctx, {logits: randn(rand, 3, 2), T: 3, E: 1, nGroup: 1, topkGroup: 1, k: 1, rsf: 2.5,
          bias: uniformF32(rand, 1, -0.1, 0.1), renormalize}, true);
      }
    });

    it('T = 0 gives empty outputs', async () => {
      await runScoresCase(ctx, {logits: new Float32Array(0), T: 0, E: 8, nGroup: 2, topkGroup: 1, k: 2, rsf: 1,
        bias: null, renormalize: true}, true);
    });
  });
}
