/**
 * Routing gradients: the chosen weights (and getMoeScores' dense scores) with respect to the gate logits, vs
 * float64 central differences of the reference router with the experts held fixed. A step flips no choice: each
 * difference checks that the reference picks the same ids at both points (a flip would mean a near-tie case).
 */
import * as tf from '@tensorflow/tfjs-core';
import {getMoeScores, moeTopkSelect} from 'tfjs-moe';

import {refGetMoeScores, refMoeTopkSelect} from '../../reference/moe_reference.js';
import {randInt, randn, rng} from '../../helpers/util.js';
import {caseSeed, ConformanceContext, expectSameInts, pick, readI32} from '../../ops/conformance/context.js';
import {checkGradients, dot, GradInput} from '../grad_check.js';
import {describeCase, randomCase, reference, route, RoutingOptionsCase} from '../../ops/conformance/routing_options.js';
import {GRAD_TOL} from './tolerances.js';

function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Throws when a perturbed point chose other experts (the difference would straddle a discontinuity). */
function fixedChoice(base: Int32Array, ids: Int32Array): void {
  if (!sameIds(base, ids)) throw new Error('a central-difference step changed the chosen experts (near tie)');
}

export function describeRoutingGradients(ctx: ConformanceContext): void {
  describe('moeTopkSelect gradients', () => {
    const n = ctx.cases(16, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradTopk', i);
      const rand = rng(seed);
      const T = randInt(rand, i === 0 ? 0 : 1, 6), E = randInt(rand, 2, 10), k = randInt(rand, 1, Math.min(E, 4));
      const norm = i % 2 === 0;
      const withBias = rand() < 0.4;
      const what = `seed=${seed} T=${T} E=${E} k=${k} applyNormWeight=${norm} bias=${withBias}`;
      it(`logits${withBias ? ', bias (selection only: 0)' : ''}: ${what}`, async () => {
        const logits = randn(rand, T * E, 2);
        const bias = withBias ? randn(rand, E, 0.1) : null;
        const cot = randn(rand, T * k);
        const base = refMoeTopkSelect(logits, T, E, bias, k, norm).ids;
        await expectOurIds(ctx, base, () => moeTopkSelect(tf.tensor2d(logits, [T, E]),
            bias && tf.tensor1d(bias), k, norm));
        const inputs: GradInput[] = [{name: 'logits', values: logits, shape: [T, E]}];
        if (bias) inputs.push({name: 'bias', values: bias, shape: [E]});
        const cotT = tf.tensor2d(cot, [T, k]);
        try {
          await checkGradients(ctx, {
            op: 'moeTopkSelect', what, inputs, h: 1e-6, tol: GRAD_TOL.routing, zeroGradient: ['bias'],
            loss: (l, b) => {
              const {topkIds, topkWeights} = moeTopkSelect(l as tf.Tensor2D, (b ?? null) as tf.Tensor1D | null, k, norm);
              topkIds.dispose();
              return tf.sum(tf.mul(topkWeights, cotT));
            },
            referenceLoss: ([l, b]) => {
              const ref = refMoeTopkSelect(l, T, E, bias ? b : null, k, norm);
              fixedChoice(base, ref.ids);
              return dot(cot, ref.weights);
            },
          });
        } finally {
          cotT.dispose();
        }
      });
    }
  });

  describe('getMoeScores gradients', () => {
    const n = ctx.cases(16, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradScores', i);
      const rand = rng(seed);
      const nGroup = pick(rand, [1, 2, 4]);
      const E = nGroup * randInt(rand, 1, 4);
      const topkGroup = randInt(rand, 1, nGroup);
      const k = randInt(rand, 1, Math.min(E, topkGroup * (E / nGroup), 4));
      const T = randInt(rand, i === 0 ? 0 : 1, 6);
      const renormalize = i % 2 === 0;
      const rsf = pick(rand, [1, 2.5, 0.7]);
      const withBias = rand() < 0.4;
      const what = `seed=${seed} T=${T} E=${E} G=${nGroup} Gk=${topkGroup} k=${k} rsf=${rsf} renormalize=${renormalize} ` +
          `bias=${withBias}`;
      it(`logits via scores and weights${withBias ? ', bias (selection only: 0)' : ''}: ${what}`, async () => {
        const logits = randn(rand, T * E, 2);
        const bias = withBias ? randn(rand, E, 0.1) : null;
        const cotScores = randn(rand, T * E), cotWeights = randn(rand, T * k);
        const base = refGetMoeScores(logits, T, E, nGroup, topkGroup, k, rsf, bias, renormalize).ids;
        await expectOurIds(ctx, base, () => getMoeScores(tf.tensor2d(logits, [T, E]), nGroup, topkGroup, k, rsf,
            bias && tf.tensor1d(bias), renormalize));
        const inputs: GradInput[] = [{name: 'logits', values: logits, shape: [T, E]}];
        if (bias) inputs.push({name: 'bias', values: bias, shape: [E]});
        const cotScoresT = tf.tensor2d(cotScores, [T, E]), cotWeightsT = tf.tensor2d(cotWeights, [T, k]);
        try {
          await checkGradients(ctx, {
            op: 'getMoeScores', what, inputs, h: 1e-6, tol: GRAD_TOL.routing, zeroGradient: ['bias'],
            loss: (l, b) => {
              const {scores, topkIds, topkWeights} = getMoeScores(l as tf.Tensor2D, nGroup, topkGroup, k, rsf,
                  (b ?? null) as tf.Tensor1D | null, renormalize);
              topkIds.dispose();
              return tf.add(tf.sum(tf.mul(scores, cotScoresT)), tf.sum(tf.mul(topkWeights, cotWeightsT)));
            },
            referenceLoss: ([l, b]) => {
              const ref = refGetMoeScores(l, T, E, nGroup, topkGroup, k, rsf, bias ? b : null, renormalize);
              fixedChoice(base, ref.ids);
              return dot(cotScores, ref.scores) + dot(cotWeights, ref.weights);
            },
          });
        } finally {
          tf.dispose([cotScoresT, cotWeightsT]);
        }
      });
    }
  });
}

/**
 * routedScalingFactor, group_limited_greedy (moeTopkSelect's nGroup), renormalizeEpsilon and sparsemixer: the
 * weights' gradient vs central differences of refRoute. Grid logits (>= 0.05 apart) and sparsemixer thresholds away
 * from the grid's ratios keep every step on the same choice and the same masks (sparsemixer's gradient is defined
 * with the selection held fixed: docs/semantics.md 11.8).
 */
export function describeRoutingOptionGradients(ctx: ConformanceContext): void {
  describe('routing option gradients', () => {
    const n = ctx.cases(16, 3);
    for (let i = 0; i < n; i++) {
      const seed = caseSeed('gradRoutingOptions', i);
      const drawn = randomCase(seed, 5);
      // k = 1 renormalised is w = v / (v + eps): its gradient is eps / (v + eps)^2, all float32 cancellation.
      optionGradientCase(ctx, drawn.k === 1 ? {...drawn, renormalize: false} : drawn, rng(seed + 1));
    }
    // sparsemixer on every backend, whatever the draws above picked.
    for (let i = 0, found = 0; found < ctx.cases(6, 2); i++) {
      const c = randomCase(caseSeed('gradSparsemixer', i), 5);
      if (c.method !== 'sparsemixer') continue;
      found++;
      optionGradientCase(ctx, c, rng(caseSeed('gradSparsemixer', i) + 1));
    }
  });
}

function optionGradientCase(ctx: ConformanceContext, c: RoutingOptionsCase, rand: () => number): void {
  it(`logits: ${describeCase(c)}`, async () => {
    const {T, E, k} = c;
    const cot = randn(rand, T * k);
    const base = reference(c).ids;
    await expectOurIds(ctx, base, () => route(c, tf.tensor2d(c.logits, [T, E]), c.bias && tf.tensor1d(c.bias)));
    const cotT = tf.tensor2d(cot, [T, k]);
    const biasT = c.bias && tf.tensor1d(c.bias);
    try {
      await checkGradients(ctx, {
        op: c.method === 'noaux_tc' ? 'getMoeScores' : 'moeTopkSelect', what: describeCase(c), h: 1e-6,
        inputs: [{name: 'logits', values: c.logits, shape: [T, E]}], tol: GRAD_TOL.routing,
        loss: l => {
          const {topkIds, topkWeights} = route(c, l as tf.Tensor2D, biasT);
          topkIds.dispose();
          return tf.sum(tf.mul(topkWeights, cotT));
        },
        referenceLoss: ([l]) => {
          const ref = reference(c, l);
          fixedChoice(base, ref.ids);
          return dot(cot, ref.weights);
        },
      });
    } finally {
      cotT.dispose();
      biasT?.dispose();
    }
  });
}

/** The path under test must choose the reference's experts, or its gradient is of another function. */
async function expectOurIds(
    ctx: ConformanceContext, expected: Int32Array, route: () => {topkIds: tf.Tensor, [k: string]: tf.Tensor}):
    Promise<void> {
  const outs = tf.tidy(() => {
    const out = ctx.call(route);
    return out.topkIds.clone();
  });
  expectSameInts(await readI32(outs), expected, 'topkIds (precondition of the gradient check)');
}
