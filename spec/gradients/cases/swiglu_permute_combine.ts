/** Gradients of fusedSwigluScale (x, scale), moePermute (x) and moeCombine (y, weights, bias) vs float64 differences. */
import * as tf from '@tensorflow/tfjs-core';
import {fusedSwigluScale, moeCombine, moePermute} from 'tfjs-moe';

import {refMoeCombine, refMoePermute, refSwigluScale} from '../../reference/moe_reference.js';
import {randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, randomIds} from '../../ops/conformance/context.js';
import {checkGradients, dot, GradInput} from '../grad_check.js';
import {GRAD_TOL} from './tolerances.js';

export function describeSwigluPermuteCombineGradients(ctx: ConformanceContext): void {
  describe('fusedSwigluScale gradients', () => {
    const n = ctx.cases(10, 2);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradSwiglu', i);
      const rand = rng(seed);
      const R = randInt(rand, i === 0 ? 0 : 1, 12), I = randInt(rand, 1, 8);
      const withScale = i % 2 === 1 || rand() < 0.5;
      // Cases 1, 2 (mod 4): gpt-oss's clamped SwiGLU, limit inside the data's spread so that the clamps bind.
      const act = i % 4 === 1 || i % 4 === 2 ? {activation: 'clamped_swiglu' as const, swigluAlpha: 1.3, swigluLimit: 1.5} : {};
      const what = `seed=${seed} R=${R} I=${I} scale=${withScale} ${JSON.stringify(act)}`;
      it(`x${withScale ? ', scale' : ''}: ${what}`, async () => {
        const cot = randn(rand, R * I);
        const inputs: GradInput[] = [{name: 'x', values: randn(rand, R * 2 * I, 2), shape: [R, 2 * I]}];
        if (withScale) inputs.push({name: 'scale', values: randn(rand, R), shape: [R]});
        const cotT = tf.tensor2d(cot, [R, I]);
        try {
          await checkGradients(ctx, {
            op: 'fusedSwigluScale', what, inputs, h: 1e-5, tol: GRAD_TOL.swiglu,
            loss: (x, scale) =>
                tf.sum(tf.mul(fusedSwigluScale(x as tf.Tensor2D, (scale ?? null) as tf.Tensor1D | null, act), cotT)),
            referenceLoss: ([x, scale]) => dot(cot, refSwigluScale(x, R, I, withScale ? scale : null, act)),
          });
        } finally {
          cotT.dispose();
        }
      });
    }
  });

  describe('moePermute gradients', () => {
    const n = ctx.cases(10, 2);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradPermute', i);
      const rand = rng(seed);
      const T = randInt(rand, i === 0 ? 0 : 1, 9), E = randInt(rand, 1, 6), D = randInt(rand, 1, 5);
      const k = randInt(rand, 1, Math.min(E, 3));
      const alignment = [1, 1, 4][randInt(rand, 0, 2)];
      const ids = randomIds(rand, T, k, E, rand() < 0.8);
      const what = `seed=${seed} T=${T} k=${k} E=${E} D=${D} alignment=${alignment}`;
      it(`x: ${what}`, async () => {
        const R = refMoePermute(new Float64Array(T * D), T, D, ids, k, E, alignment).R;
        const cot = randn(rand, R * D);
        const idsT = tf.tensor2d(ids, [T, k], 'int32');
        const cotT = tf.tensor2d(cot, [R, D]);
        try {
          await checkGradients(ctx, {
            op: 'moePermute', what, inputs: [{name: 'x', values: randn(rand, T * D), shape: [T, D]}], h: 1e-3,
            tol: GRAD_TOL.permute,
            loss: x => {
              const {permutedX, tokensPerExpert, expertOffsets, rowMap} = moePermute(x as tf.Tensor2D, idsT, E, alignment);
              tf.dispose([tokensPerExpert, expertOffsets, rowMap]);
              return tf.sum(tf.mul(permutedX, cotT));
            },
            referenceLoss: ([x]) => dot(cot, refMoePermute(x, T, D, ids, k, E, alignment).permutedX),
          });
        } finally {
          tf.dispose([idsT, cotT]);
        }
      });
    }
  });

  describe('moePermute gradients with options.weights (routingWeightOn \'input\')', () => {
    const n = ctx.cases(8, 2);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradPermuteWeights', i);
      const rand = rng(seed);
      const T = randInt(rand, 1, 7), E = randInt(rand, 1, 5), D = randInt(rand, 1, 5);
      const k = randInt(rand, 1, Math.min(E, 3));
      const alignment = [1, 2][randInt(rand, 0, 1)];
      const ids = randomIds(rand, T, k, E, rand() < 0.8);
      const what = `seed=${seed} T=${T} k=${k} E=${E} D=${D} alignment=${alignment}`;
      it(`x, weights: ${what}`, async () => {
        const ref = (x: ArrayLike<number>, w: ArrayLike<number>) => {
          const r = refMoePermute(x, T, D, ids, k, E, alignment);
          for (let j = 0; j < T * k; j++) for (let d = 0; d < D; d++) r.permutedX[r.rowMap[j] * D + d] *= w[j];
          return r;
        };
        const R = ref(new Float64Array(T * D), new Float64Array(T * k)).R;
        const cot = randn(rand, R * D);
        const idsT = tf.tensor2d(ids, [T, k], 'int32');
        const cotT = tf.tensor2d(cot, [R, D]);
        try {
          await checkGradients(ctx, {
            op: 'moePermute', what, h: 1e-3, tol: GRAD_TOL.permute,
            inputs: [{name: 'x', values: randn(rand, T * D), shape: [T, D]},
                     {name: 'weights', values: randn(rand, T * k), shape: [T, k]}],
            loss: (x, w) => {
              const {permutedX, tokensPerExpert, expertOffsets, rowMap} =
                  moePermute(x as tf.Tensor2D, idsT, E, alignment, {weights: w as tf.Tensor2D});
              tf.dispose([tokensPerExpert, expertOffsets, rowMap]);
              return tf.sum(tf.mul(permutedX, cotT));
            },
            referenceLoss: ([x, w]) => dot(cot, ref(x, w).permutedX),
          });
        } finally {
          tf.dispose([idsT, cotT]);
        }
      });
    }
  });

  describe('moeCombine gradients', () => {
    const n = ctx.cases(16, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradCombine', i);
      const rand = rng(seed);
      const T = randInt(rand, i === 0 ? 0 : 1, 8), E = randInt(rand, 1, 6), D = randInt(rand, 1, 5);
      const k = randInt(rand, 1, Math.min(E, 3));
      const alignment = [1, 1, 2][randInt(rand, 0, 2)];
      const weightsApplied = i % 4 === 2 || rand() < 0.3;
      const withBias = i % 4 === 1 || rand() < 0.5;
      const ids = randomIds(rand, T, k, E, true);
      // rowMap as moePermute makes it (distinct rows of [0,R), padding rows unused).
      const {R, rowMap} = refMoePermute(new Float64Array(T), T, 1, ids, k, E, alignment);
      const what = `seed=${seed} T=${T} k=${k} E=${E} D=${D} R=${R} bias=${withBias} weightsApplied=${weightsApplied}`;
      it(`y, weights${withBias ? ', bias' : ''}: ${what}`,
         () => checkCombineGradient(ctx, rand, what, {T, k, E, D, R, rowMap, ids, withBias, weightsApplied}));
    }
  });

  describe('moePermute / moeCombine gradients with identity experts (zeroExperts, section 11.5)', () => {
    const n = ctx.cases(8, 2);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradIdentityExperts', i);
      const rand = rng(seed);
      const T = randInt(rand, 1, 6), E = randInt(rand, 1, 4), Z = randInt(rand, 1, 3), D = randInt(rand, 1, 4);
      const k = randInt(rand, 1, Math.min(E + Z, 3));
      const alignment = [1, 2][randInt(rand, 0, 1)];
      const weightsApplied = rand() < 0.3;
      const withBias = rand() < 0.5;
      const ids = randomIds(rand, T, k, E + Z, true);
      const {R, rowMap} = refMoePermute(new Float64Array(T), T, 1, ids, k, E, alignment, Z);
      const what = `seed=${seed} T=${T} k=${k} E=${E} Z=${Z} D=${D} R=${R} bias=${withBias} weightsApplied=${weightsApplied}`;
      it(`permute x (identity entries have no row): ${what}`, async () => {
        const cot = randn(rand, R * D);
        const idsT = tf.tensor2d(ids, [T, k], 'int32'), cotT = tf.tensor2d(cot, [R, D]);
        try {
          await checkGradients(ctx, {
            op: 'moePermute', what, h: 1e-3, tol: GRAD_TOL.permute,
            inputs: [{name: 'x', values: randn(rand, T * D), shape: [T, D]}],
            loss: x => {
              const {permutedX, tokensPerExpert, expertOffsets, rowMap: map} =
                  moePermute(x as tf.Tensor2D, idsT, E, alignment, {zeroExperts: Z});
              tf.dispose([tokensPerExpert, expertOffsets, map]);
              return tf.sum(tf.mul(permutedX, cotT));
            },
            referenceLoss: ([x]) => dot(cot, refMoePermute(x, T, D, ids, k, E, alignment, Z).permutedX),
          });
        } finally {
          tf.dispose([idsT, cotT]);
        }
      });
      it(`combine y, weights, identityInput${withBias ? ', bias' : ''}: ${what}`, () => checkCombineGradient(
          ctx, rand, what, {T, k, E, D, R, rowMap, ids, withBias, weightsApplied, identity: true}));
    }
  });
}

interface CombineGradCase {
  T: number; k: number; E: number; D: number; R: number;
  rowMap: Int32Array; ids: Int32Array;
  withBias: boolean; weightsApplied: boolean;
  /** With options.identityInput (its slots are those with rowMap -1). */
  identity?: boolean;
}

/** moeCombine's gradients for y, the weights and (when present) the identity input and the bias. */
async function checkCombineGradient(
    ctx: ConformanceContext, rand: () => number, what: string, c: CombineGradCase): Promise<void> {
  const {T, k, E, D, R, rowMap, ids, withBias, weightsApplied, identity = false} = c;
  const cot = randn(rand, T * D);
  const inputs: GradInput[] = [
    {name: 'y', values: randn(rand, R * D), shape: [R, D]},
    {name: 'weights', values: randn(rand, T * k, 0.5), shape: [T, k]},
  ];
  if (identity) inputs.push({name: 'identity', values: randn(rand, T * D), shape: [T, D]});
  if (withBias) inputs.push({name: 'bias', values: randn(rand, E * D), shape: [E, D]});
  const rowMapT = tf.tensor2d(rowMap, [T, k], 'int32'), idsT = tf.tensor2d(ids, [T, k], 'int32');
  const cotT = tf.tensor2d(cot, [T, D]);
  const split = <V>(values: V[]) => ({y: values[0], w: values[1], x: identity ? values[2] : undefined,
    bias: withBias ? values[identity ? 3 : 2] : undefined});
  try {
    await checkGradients(ctx, {
      op: 'moeCombine', what, inputs, h: 1e-3, tol: GRAD_TOL.combine,
      // Pre-weighted rows, no bias and no identity slots: the weights do not enter the output.
      zeroGradient: weightsApplied && !withBias && !identity ? ['weights'] : [],
      loss: (...ts) => {
        const {y, w, x, bias} = split(ts);
        return tf.sum(tf.mul(moeCombine(y as tf.Tensor2D, rowMapT, w as tf.Tensor2D, idsT, {downProjBias: bias as
            tf.Tensor2D | undefined, weightsApplied, ...(x ? {identityInput: x as tf.Tensor2D} : {})}), cotT));
      },
      referenceLoss: values => {
        const {y, w, x, bias} = split(values);
        return dot(cot, refMoeCombine(y, R, D, rowMap, w, ids, T, k, bias ?? null, weightsApplied, x ?? null));
      },
    });
  } finally {
    tf.dispose([rowMapT, idsT, cotT]);
  }
}
