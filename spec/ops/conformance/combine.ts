/** moeCombine (docs/semantics.md section 6) against the float64 reference. */
import * as tf from '@tensorflow/tfjs-core';
import {moeCombine} from 'tfjs-moe';

import {refMoeCombine} from '../../reference/moe_reference.js';
import {expectNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectShape, randomIds, randTokens, readF32, TOL, uniformF32, withInputs} from './context.js';

const OP = 'moeCombine';

interface CombineCase {
  y: Float32Array;
  R: number;
  D: number;
  rowMap: Int32Array;
  weights: Float32Array;
  ids: Int32Array;
  T: number;
  k: number;
  E: number;
  bias: Float32Array | null;
  weightsApplied: boolean;
  /** [T,D]: the identity experts' input; slots with rowMap -1 add w * identity[t] (section 11.5). */
  identity?: Float32Array;
}

function describeCase(c: CombineCase): string {
  return `T=${c.T} k=${c.k} R=${c.R} D=${c.D} E=${c.E} bias=${c.bias != null} weightsApplied=${c.weightsApplied}` +
      (c.identity ? ' identityInput' : '');
}

async function runCombineCase(ctx: ConformanceContext, c: CombineCase): Promise<void> {
  const {y, R, D, rowMap, weights, ids, T, k, E, bias, weightsApplied, identity} = c;
  await expectNoLeak(async () => {
    const yT = tf.tensor2d(y, [R, D]);
    const rowMapT = tf.tensor2d(rowMap, [T, k], 'int32');
    const weightsT = tf.tensor2d(weights, [T, k]);
    const idsT = tf.tensor2d(ids, [T, k], 'int32');
    const biasT = bias ? tf.tensor2d(bias, [E, D]) : null;
    const identityT = identity ? tf.tensor2d(identity, [T, D]) : null;
    const {out} = await withInputs([yT, rowMapT, weightsT, idsT, biasT, identityT], async () => {
      const outT = ctx.call(() => moeCombine(yT, rowMapT, weightsT, idsT,
          {downProjBias: biasT, weightsApplied, ...(identityT ? {identityInput: identityT} : {})}));
      expectShape(outT, [T, D], 'moeCombine output');
      const out = await readF32(outT);
      return {out};
    });
    const ref = refMoeCombine(y, R, D, rowMap, weights, ids, T, k, bias, weightsApplied, identity ?? null);
    ctx.expectClose(OP, out, ref, TOL.combine, describeCase(c));
  });
}

/** rowMap as moePermute makes it: distinct rows of [0,R), R possibly larger than T*k (padding, unused rows). */
function distinctRows(rand: () => number, n: number, R: number): Int32Array {
  const rows = Array.from({length: R}, (_, i) => i);
  for (let i = R - 1; i > 0; i--) {
    const j = randInt(rand, 0, i);
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  return Int32Array.from(rows.slice(0, n));
}

function randomCombineCase(seed: number, maxT: number, maxE: number, maxD: number): CombineCase {
  const rand = rng(seed);
  const T = randTokens(rand, maxT);
  const E = randInt(rand, 1, maxE);
  const k = randInt(rand, 1, Math.min(E, 8));
  const D = randInt(rand, 1, maxD);
  const R = T * k + randInt(rand, 0, 10);
  // Mostly routing-like weights in (0,1); sometimes signed, which a sum must handle too.
  const weights = rand() < 0.7 ? uniformF32(rand, T * k, 0, 1) : uniformF32(rand, T * k, -1, 1);
  return {
    y: randn(rand, R * D, 2), R, D, rowMap: distinctRows(rand, T * k, R), weights, ids: randomIds(rand, T, k, E, true),
    T, k, E, bias: rand() < 0.5 ? randn(rand, E * D) : null, weightsApplied: rand() < 0.4,
  };
}

export function describeCombineConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(80, 4);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const c = randomCombineCase(seed, ctx.full ? 40 : 6, ctx.full ? 64 : 12, ctx.full ? 48 : 8);
      it(`random case seed=${seed} ${describeCase(c)}`, () => runCombineCase(ctx, c));
    }

    // options.identityInput (zeroExperts): slots with no row (-1, an identity id >= E) add w * x[t], no bias.
    const ni = ctx.cases(20, 2);
    for (let i = 0; i < ni; i++) {
      const seed = caseSeed(`${OP} identityInput`, i);
      const c = randomCombineCase(seed, ctx.full ? 40 : 6, ctx.full ? 32 : 8, ctx.full ? 24 : 8);
      const rand = rng(seed + 1);
      const rowMap = Int32Array.from(c.rowMap);
      const ids = Int32Array.from(c.ids);
      for (let s = 0; s < rowMap.length; s++) {
        if (rand() < 0.4) {
          rowMap[s] = -1;
          ids[s] = c.E + randInt(rand, 0, 2);
        }
      }
      const identity = randn(rand, c.T * c.D);
      it(`identityInput: random case seed=${seed} ${describeCase(c)}`,
         () => runCombineCase(ctx, {...c, rowMap, ids, identity}));
    }

    it('one row per token is still weighted; the bias is weighted in both modes', async () => {
      const rand = rng(41);
      const T = 3, D = 4, E = 3, R = 5;
      const base = {y: randn(rand, R * D), R, D, rowMap: Int32Array.from([4, 0, 2]),
        weights: Float32Array.from([0.3, 0.5, 0.9]), ids: Int32Array.from([2, 0, 1]), T, k: 1, E};
      for (const weightsApplied of [false, true]) {
        await runCombineCase(ctx, {...base, bias: randn(rand, E * D), weightsApplied});
        await runCombineCase(ctx, {...base, bias: null, weightsApplied});
      }
    });

    it('a zero weight removes the row and its bias', async () => {
      const rand = rng(42);
      await runCombineCase(ctx, {y: randn(rand, 4 * 3), R: 4, D: 3, rowMap: Int32Array.from([3, 1, 0, 2]),
        weights: Float32Array.from([0, 1, 0.25, 0]), ids: Int32Array.from([0, 1, 1, 0]), T: 2, k: 2, E: 2,
        bias: randn(rand, 2 * 3), weightsApplied: false});
    });

    it('a single expert (E = 1) with its bias', async () => {
      const rand = rng(43);
      await runCombineCase(ctx, {y: randn(rand, 3 * 2), R: 3, D: 2, rowMap: Int32Array.from([2, 0, 1]),
        weights: Float32Array.from([0.5, 1, 0.25]), ids: new Int32Array(3), T: 3, k: 1, E: 1, bias: randn(rand, 2),
        weightsApplied: false});
    });

    it('T = 0 gives an empty output', async () => {
      await runCombineCase(ctx, {y: new Float32Array(6), R: 2, D: 3, rowMap: new Int32Array(0),
        weights: new Float32Array(0), ids: new Int32Array(0), T: 0, k: 2, E: 2, bias: new Float32Array(6),
        weightsApplied: false});
    });
  });
}
