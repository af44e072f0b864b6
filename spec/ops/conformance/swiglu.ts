/** fusedSwigluScale (docs/semantics.md section 5) against the float64 reference. */
import * as tf from '@tensorflow/tfjs-core';
import {fusedSwigluScale, SwigluActivationOptions} from 'tfjs-moe';

import {refSwigluScale} from '../../reference/moe_reference.js';
import {expectNoLeak, expectThrowsNoLeak, randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectShape, readF32, TOL, uniformF32, withInputs} from './context.js';

const OP = 'fusedSwigluScale';

async function runSwigluCase(
    ctx: ConformanceContext, x: Float32Array, R: number, I: number, scale: Float32Array | null,
    act: SwigluActivationOptions = {}): Promise<void> {
  await expectNoLeak(async () => {
    const xT = tf.tensor2d(x, [R, 2 * I]);
    const scaleT = scale ? tf.tensor1d(scale) : null;
    const {out} = await withInputs([xT, scaleT], async () => {
      const outT = ctx.call(() => fusedSwigluScale(xT, scaleT, act));
      expectShape(outT, [R, I], 'fusedSwigluScale output');
      const out = await readF32(outT);
      return {out};
    });
    ctx.expectClose(OP, out, refSwigluScale(x, R, I, scale, act), TOL.swiglu,
                    `R=${R} I=${I} scale=${scale != null} ${JSON.stringify(act)}`);
  });
}

export function describeSwigluConformance(ctx: ConformanceContext): void {
  describe(OP, () => {
    const n = ctx.cases(40, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed(OP, i);
      const rand = rng(seed);
      const R = rand() < 0.1 ? 0 : randInt(rand, 1, ctx.full ? 60 : 8);
      const I = randInt(rand, 1, ctx.full ? 40 : 8);
      const withScale = rand() < 0.6;
      it(`random case seed=${seed} R=${R} I=${I} scale=${withScale}`, async () => {
        const x = randn(rand, R * 2 * I, 3);
        await runSwigluCase(ctx, x, R, I, withScale ? uniformF32(rand, R, -1, 1) : null);
      });
    }

    // gpt-oss's clamped SwiGLU: limits around the data's spread (x ~ 3 N(0,1)) so that both clamps bind often.
    const nc = ctx.cases(20, 3);
    for (let i = 0; i < nc; i++) {
      const seed = caseSeed(`${OP} clamped`, i);
      const rand = rng(seed);
      const R = rand() < 0.1 ? 0 : randInt(rand, 1, ctx.full ? 60 : 8);
      const I = randInt(rand, 1, ctx.full ? 40 : 8);
      const withScale = rand() < 0.6;
      const act: SwigluActivationOptions = i === 0 ? {activation: 'clamped_swiglu'} :
          {activation: 'clamped_swiglu', swigluAlpha: 0.5 + 2 * rand(), swigluLimit: 0.5 + 6 * rand()};
      it(`clamped_swiglu random case seed=${seed} R=${R} I=${I} scale=${withScale} ${JSON.stringify(act)}`, async () => {
        const x = randn(rand, R * 2 * I, 3);
        await runSwigluCase(ctx, x, R, I, withScale ? uniformF32(rand, R, -1, 1) : null, act);
      });
    }

    it('clamped_swiglu: the clamps bind exactly at the limit (gate above, up both ways), large |gate| finite', async () => {
      const act: SwigluActivationOptions = {activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: 7};
      const x = Float32Array.from([
        7, 8, -100, 1e4, 2,          // gates (I = 5)
        7, -7, 9, -1e4, -1,          // ups
      ]);
      await runSwigluCase(ctx, x, 1, 5, null, act);
      await runSwigluCase(ctx, x, 1, 5, Float32Array.from([-0.5]), act);
      // (u + 1): up = -1 gives exactly 0, up = 0 gives the gate term alone.
      await runSwigluCase(ctx, Float32Array.from([1.5, 3, -1, 0]), 1, 2, null, act);
    });

    it('the gate is the first half: swapping halves changes the result', async () => {
      // silu(1) * 2 vs silu(2) * 1: a kernel reading the halves the wrong way round fails here.
      await runSwigluCase(ctx, Float32Array.from([1, 2]), 1, 1, null);
      await runSwigluCase(ctx, Float32Array.from([2, 1]), 1, 1, Float32Array.from([0.5]));
    });

    it('stays finite and exact for large |gate| (no exp overflow to NaN) and zero scale', async () => {
      const x = Float32Array.from([
        -100, 100, -1e4, 1e4, 3, 3, 3, 3,      // row 0: gates, then ups (I = 4)
        88, -90, 1e4, -1e4, 1, 1, 1, 1,        // row 1
      ]);
      await runSwigluCase(ctx, x, 2, 4, null);
      await runSwigluCase(ctx, x, 2, 4, Float32Array.from([0, -2]));
    });

    it('R = 0 gives an empty output', async () => {
      await runSwigluCase(ctx, new Float32Array(0), 0, 3, new Float32Array(0));
    });
  });
}
