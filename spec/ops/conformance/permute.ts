/** moePermute (docs/semantics.md section 3) against the float64 reference. */
import * as tf from '@tensorflow/tfjs-core';
import {moePermute} from 'tfjs-moe';

import {refMoePermute} from '../../reference/moe_reference.js';
import {expectNoLeak, expectThrowsNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectSameInts, expectShape, pick, randomIds, randTokens, readF32, readI32, TOL, withInputs} from './context.js';

const OP = 'moePermute';

interface PermuteCase {
  x: Float32Array;
  T: number;
  D: number;
  ids: Int32Array;
  k: number;
  E: number;
  alignment: number;
  /** [T,k]: each row scaled by its entry's weight (routingWeightOn 'input'). */
  weights?: Float32Array;
  /** Identity experts: ids in [E, E+Z) get no row (section 11.5). */
  zeroExperts?: number;
}

async function runPermuteCase(ctx: ConformanceContext, c: PermuteCase): Promise<void> {
  const {x, T, D, ids, k, E, alignment, weights, zeroExperts = 0} = c;
  await expectNoLeak(async () => {
    const xT = tf.tensor2d(x, [T, D]);
    const idsT = tf.tensor2d(ids, [T, k], 'int32');
    const wT = weights != null ? tf.tensor2d(weights, [T, k]) : null;
    const ref = refMoePermute(x, T, D, ids, k, E, alignment, zeroExperts);
    if (weights != null) {
      // The reference's rows times their entry's weight (docs/semantics.md 11.6).
      for (let i = 0; i < T * k; i++) {
        if (ref.rowMap[i] >= 0) for (let d = 0; d < D; d++) ref.permutedX[ref.rowMap[i] * D + d] *= weights[i];
      }
    }
    const {permutedX, tokensPerExpert, expertOffsets, rowMap} = await withInputs([xT, idsT, wT], async () => {
      const out = ctx.call(() => moePermute(xT, idsT, E, alignment, {weights: wT, zeroExperts}));
      expectShape(out.permutedX, [ref.R, D], 'permutedX');
      expectShape(out.tokensPerExpert, [E], 'tokensPerExpert');
      expectShape(out.expertOffsets, [E + 1], 'expertOffsets');
      expectShape(out.rowMap, [T, k], 'rowMap');
      return {
        permutedX: await readF32(out.permutedX),
        tokensPerExpert: await readI32(out.tokensPerExpert),
        expertOffsets: await readI32(out.expertOffsets),
        rowMap: await readI32(out.rowMap),
      };
    });

    expectSameInts(tokensPerExpert, ref.tokensPerExpert, 'tokensPerExpert');
    expectSameInts(expertOffsets, ref.expertOffsets, 'expertOffsets');
    expectSameInts(rowMap, ref.rowMap, 'rowMap');
    // A copy: anything but the exact values (padding and unused rows zero) is a bug; relError still records it.
    ctx.expectClose(OP, permutedX, ref.permutedX, TOL.permute, `permutedX (T=${T} D=${D} k=${k} E=${E} ` +
        `alignment=${alignment} weights=${weights != null})`);
  });
}

function randomPermuteCase(seed: number, maxT: number, maxE: number, maxD: number): PermuteCase {
  const rand = rng(seed);
  const T = randTokens(rand, maxT);
  const E = randInt(rand, 1, maxE);
  const k = randInt(rand, 1, Math.min(E, 8));
  const D = randInt(rand, 1, maxD);
  const alignment = pick(rand, [1, 1, 2, 4, 8, 16]);
  return {x: randn(rand, T * D, 3), T, D, ids: randomIds(rand, T, k, E, true), k, E, alignment};
}

export function describePermuteConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(80, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = randomPermuteCase(seed, ctx.full ? 40 : 6, ctx.full ? 64 : 12, ctx.full ? 48 : 8);
      it(`random case seed=${seed} T=${c.T} E=${c.E} k=${c.k} D=${c.D} alignment=${c.alignment}`,
         () => runPermuteCase(ctx, c));
    }

    // options.weights (routingWeightOn 'input'): each row scaled by its entry's weight.
    const nw = ctx.cases(30, 3);
    for (let i = 0; i < nw; i++) {
      const seed = caseSeed(`${OP} weights`, i);
      const c = randomPermuteCase(seed, ctx.full ? 40 : 6, ctx.full ? 64 : 12, ctx.full ? 48 : 8);
      c.weights = randn(rng(seed + 1), c.T * c.k);
      it(`weights: random case seed=${seed} T=${c.T} E=${c.E} k=${c.k} D=${c.D} alignment=${c.alignment}`,
         () => runPermuteCase(ctx, c));
    }

    // options.zeroExperts (LongCat-Flash's identity experts): ids in [E, E+Z) get no row and no count.
    const nz = ctx.cases(20, 2);
    for (let i = 0; i < nz; i++) {
      const seed = caseSeed(`${OP} zeroExperts`, i);
      const c = randomPermuteCase(seed, ctx.full ? 40 : 6, ctx.full ? 32 : 8, ctx.full ? 24 : 8);
      const rand = rng(seed + 1);
      const zeroExperts = randInt(rand, 1, 4);
      c.ids = randomIds(rand, c.T, c.k, c.E + zeroExperts, true);
      c.zeroExperts = zeroExperts;
      if (rand() < 0.5) c.weights = randn(rand, c.T * c.k);
      it(`zeroExperts: random case seed=${seed} T=${c.T} E=${c.E} Z=${zeroExperts} k=${c.k} D=${c.D} ` +
         `alignment=${c.alignment} weights=${c.weights != null}`, () => runPermuteCase(ctx, c));
    }

    it('zeroExperts: every entry an identity expert\'s leaves every row zero and rowMap all -1', async () => {
      const rand = rng(13);
      await runPermuteCase(ctx, {x: randn(rand, 3 * 4), T: 3, D: 4, ids: Int32Array.from([2, 3, 3, 2, 2, 3]), k: 2,
        E: 2, alignment: 2, zeroExperts: 2});
    });

    it('weights: T = 0, and duplicate ids of one token scaled separately', async () => {
      await runPermuteCase(ctx, {x: new Float32Array(0), T: 0, D: 3, ids: new Int32Array(0), k: 2, E: 5, alignment: 4,
        weights: new Float32Array(0)});
      const rand = rng(12);
      await runPermuteCase(ctx, {x: randn(rand, 2 * 4), T: 2, D: 4, ids: Int32Array.from([1, 1, 0, 1]), k: 2, E: 2,
        alignment: 1, weights: Float32Array.from([0.25, -2, 0, 3])});
    });

    it('groups by ascending expert then token; empty experts get empty segments; padding rows are zero', async () => {
      const rand = rng(3);
      // T=4, k=2, E=6: experts 1, 3 and 5 receive nothing.
      const ids = Int32Array.from([4, 0, 2, 4, 0, 2, 4, 0]);
      const x = randn(rand, 4 * 3);
      for (const alignment of [1, 4]) await runPermuteCase(ctx, {x, T: 4, D: 3, ids, k: 2, E: 6, alignment});
    });

    it('all tokens to one expert, the last one', async () => {
      const rand = rng(4);
      const T = 5;
      const ids = new Int32Array(T).fill(6);
      for (const alignment of [1, 8]) await runPermuteCase(ctx, {x: randn(rand, T * 2), T, D: 2, ids, k: 1, E: 7, alignment});
    });

    it('a single expert (E = 1), with and without alignment', async () => {
      const rand = rng(9);
      for (const alignment of [1, 2]) {
        await runPermuteCase(ctx, {x: randn(rand, 3 * 4), T: 3, D: 4, ids: new Int32Array(3), k: 1, E: 1, alignment});
      }
    });

    it('T = 0: zero used rows, offsets all 0, and with alignment > 1 the padded R is all zeros', async () => {
      for (const alignment of [1, 4]) {
        await runPermuteCase(ctx, {x: new Float32Array(0), T: 0, D: 3, ids: new Int32Array(0), k: 2, E: 5, alignment});
      }
    });

    it('k = E (every expert per token) with alignment larger than T', async () => {
      const rand = rng(8);
      const T = 3, E = 4;
      await runPermuteCase(ctx, {x: randn(rand, T * 5), T, D: 5, ids: randomIds(rand, T, E, E, true), k: E, E,
        alignment: 16});
    });
  });
}
