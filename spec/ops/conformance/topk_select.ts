/** moeTopkSelect (docs/semantics.md section 1) against the float64 reference: random cases and the doc's edge cases. */
import * as tf from '@tensorflow/tfjs-core';
import {moeTopkSelect} from 'tfjs-moe';

import {refMoeTopkSelect} from '../../reference/moe_reference.js';
import {expectNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectSameInts, expectShape, pick, randTokens, readF32, readI32, TOL, uniformF32, withInputs} from './context.js';
import {checkSelection, topkWeightsFor} from './routing_checks.js';

const OP = 'moeTopkSelect';

interface TopkCase {
  logits: Float32Array;
  T: number;
  E: number;
  bias: Float32Array | null;
  k: number;
  norm: boolean;
}

/** Runs one case; `strictIds`: compare ids exactly (edge cases built on exact ties), else allow near-ties. */
async function runTopkCase(ctx: ConformanceContext, c: TopkCase, strictIds: boolean): Promise<void> {
  const {logits, T, E, bias, k, norm} = c;
  await expectNoLeak(async () => {
    const logitsT = tf.tensor2d(logits, [T, E]);
    const biasT = bias ? tf.tensor1d(bias) : null;
    const {ids, weights} = await withInputs([logitsT, biasT], async () => {
      const {topkIds, topkWeights} = ctx.call(() => moeTopkSelect(logitsT, biasT, k, norm));
      expectShape(topkIds, [T, k], 'topkIds');
      expectShape(topkWeights, [T, k], 'topkWeights');
      const ids = await readI32(topkIds);
      const weights = await readF32(topkWeights);
      return {ids, weights};
    });

    const ref = refMoeTopkSelect(logits, T, E, bias, k, norm);
    if (strictIds) {
      expectSameInts(ids, ref.ids, 'topkIds');
      ctx.expectClose(OP, weights, ref.weights, TOL.routing, 'topkWeights');
    } else {
      const sel = checkSelection(ids, ref.ids, ref.selectionScores, T, E, k);
      expect(sel.failure).withContext('topkIds vs reference').toBeNull();
      ctx.expectClose(OP, weights, topkWeightsFor(ids, ref.probs, T, E, k, norm), TOL.routing, 'topkWeights');
    }
  });
}

function randomTopkCase(seed: number, maxT: number, maxE: number): TopkCase {
  const rand = rng(seed);
  const T = randTokens(rand, maxT);
  const E = randInt(rand, 1, maxE);
  const k = rand() < 0.15 ? E : randInt(rand, 1, Math.min(E, 8));
  const scale = pick(rand, [0.5, 2, 8]);
  const logits = randn(rand, T * E, scale);
  // Sometimes snap logits to a coarse grid so exact ties (duplicate logits) occur inside random data.
  if (rand() < 0.3) for (let i = 0; i < logits.length; i++) logits[i] = Math.round(logits[i] * 2) / 2;
  const bias = rand() < 0.5 ? uniformF32(rand, E, -0.2, 0.2) : null;
  return {logits, T, E, bias, k, norm: rand() < 0.6};
}

export function describeTopkSelectConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(120, 5);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = randomTopkCase(seed, ctx.full ? 40 : 6, ctx.full ? 64 : 16);
      it(`random case seed=${seed} T=${c.T} E=${c.E} k=${c.k} bias=${c.bias != null} norm=${c.norm}`,
         () => runTopkCase(ctx, c, false));
    }

    it('exact ties (duplicate logits) go to the lower expert index, also under an equal bias', async () => {
      const E = 8;
      const logits = Float32Array.from([
        1, 3, 3, 0, 3, 1, 2, 2,  // 3s at 1,2,4 then 2s at 6,7
        0, 0, 0, 0, 0, 0, 0, 0,  // all tied
        5, 4, 5, 4, 5, 4, 5, 4,
      ]);
      for (const norm of [true, false]) {
        await runTopkCase(ctx, {logits, T: 3, E, bias: null, k: 4, norm}, true);
        await runTopkCase(ctx, {logits, T: 3, E, bias: new Float32Array(E).fill(0.25), k: 5, norm}, true);
      }
      // Equal logits with an equal bias on two experts: those two first (lower index first), then the rest.
      const bias = Float32Array.from([0, 0, 0.5, 0, 0.5, 0, 0, 0]);
      await runTopkCase(ctx, {logits: new Float32Array(E).fill(2), T: 1, E, bias, k: 3, norm: true}, true);
    });

    it('a NaN selection bias never wins; a NaN logit makes the row NaN and the choice falls to the lowest ids', async () => {
      const E = 6;
      const logits = Float32Array.from([0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0]);
      const bias = Float32Array.from([0, 0, 0, 0, 0, NaN]);
      await runTopkCase(ctx, {logits, T: 2, E, bias, k: 2, norm: true}, true);
      // Row 1 holds one NaN: softmax's sum is NaN, every p and score is NaN. Rows 0 and 2 must be unaffected.
      const withNaN = Float32Array.from([0, 1, 2, 3, 4, 5, 5, 4, NaN, 2, 1, 0, 3, 3, 1, 1, 0, 0]);
      await runTopkCase(ctx, {logits: withNaN, T: 3, E, bias: null, k: 2, norm: true}, true);
    });

    it('uses max subtraction: logits of +-1000 give finite weights', async () => {
      const logits = Float32Array.from([1000, 999, -1000, 998, -5000, 5000, 4999.5, 0]);
      await runTopkCase(ctx, {logits, T: 2, E: 4, bias: null, k: 2, norm: false}, true);
    });

    it('k = E returns every expert in score order; E = 1 gives weight 1; T = 0 gives empty outputs', async () => {
      const rand = rng(11);
      await runTopkCase(ctx, {logits: randn(rand, 5 * 7), T: 5, E: 7, bias: uniformF32(rand, 7, -0.1, 0.1), k: 7,
        norm: false}, false);
      await runTopkCase(ctx, {logits: randn(rand, 3), T: 3, E: 1, bias: null, k: 1, norm: true}, true);
      await runTopkCase(ctx, {logits: randn(rand, 3), T: 3, E: 1, bias: null, k: 1, norm: false}, true);
      await runTopkCase(ctx, {logits: new Float32Array(0), T: 0, E: 5, bias: null, k: 2, norm: true}, true);
    });
  });
}
