/**
 * Layer-level gradient check: the gradient of sum(C * FusedMoE(x)) with respect to x and every trainable weight,
 * for option sets that together use every weight, on our cpu kernels and on the composite path, against float64
 * central differences of refFusedMoE (the reference's whole-layer forward). Also: every trainable weight
 * receives a non-zero gradient, the correction bias is not trainable, and nothing leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs, FusedMoEOptions} from 'tfjs-moe';

import {expectNoLeak, randn, recordError, relError, rng} from '../helpers/util.js';
import {refGetMoeScores, refMoeTopkSelect, refSparsemixer} from '../reference/moe_reference.js';
import {centralDifferences, dot} from '../gradients/grad_check.js';
import {GRAD_TOL} from '../gradients/cases/tolerances.js';
import {randomLayer, referenceOutput, WeightData} from '../layers/layer_util.js';

const T = 6, H = 5;

const OPTION_SETS: Array<{label: string, args: FusedMoEArgs}> = [
  {label: 'greedy, renormalised (Mixtral)', args: {numExperts: 4, topK: 2, moeIntermediateSize: 3}},
  {label: 'greedy, not renormalised, expert biases', args:
      {numExperts: 4, topK: 2, moeIntermediateSize: 3, renormalize: false, withBias: true}},
  {label: 'greedy, correction bias, probInAdvance, biases', args:
      {numExperts: 5, topK: 2, moeIntermediateSize: 2, useCorrectionBias: true, probInAdvance: true, withBias: true}},
  {label: 'noaux_tc (G=2, Gk=1, rsf 2.5), correction bias, gated shared expert', args:
      {numExperts: 4, topK: 2, moeIntermediateSize: 3, topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1,
        routedScalingFactor: 2.5, useCorrectionBias: true, sharedExpertIntermediateSize: 3, sharedExpertGate: true}},
  {label: 'latent (L=3), shared expert, biases, probInAdvance', args:
      {numExperts: 3, topK: 2, moeIntermediateSize: 2, latentSize: 3, sharedExpertIntermediateSize: 2, withBias: true,
        probInAdvance: true}},
  {label: 'noaux_tc not renormalised, latent, biases, top-1', args:
      {numExperts: 4, topK: 1, moeIntermediateSize: 3, topkMethod: 'noaux_tc', nGroup: 1, topkGroup: 1,
        renormalize: false, latentSize: 2, withBias: true}},
  {label: 'identity experts (Z=2), correction bias, probInAdvance, biases (LongCat-Flash)', args:
      {numExperts: 3, zeroExperts: 2, topK: 3, moeIntermediateSize: 2, useCorrectionBias: true, renormalize: false,
        routedScalingFactor: 1.5, probInAdvance: true, withBias: true}},
  {label: 'sparsemixer (PhiMoE), eps 0.2', args:
      {numExperts: 4, topK: 2, moeIntermediateSize: 3, topkMethod: 'sparsemixer', sparsemixerEpsilon: 0.2,
        renormalize: false}},
];

/** The reference's routing ids for x (to hold the experts fixed across a central difference). */
function refIds(o: FusedMoEOptions, d: WeightData, x: ArrayLike<number>): Int32Array {
  // The router scores the identity experts too.
  const E = o.numExperts + o.zeroExperts;
  const logits = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let acc = 0;
      for (let h = 0; h < H; h++) acc += x[t * H + h] * d.gate_weight[h * E + e];
      logits[t * E + e] = acc;
    }
  }
  const bias = o.useCorrectionBias ? d.gate_correction_bias : null;
  if (o.topkMethod === 'sparsemixer') return refSparsemixer(logits, T, E, o.sparsemixerEpsilon).ids;
  return o.topkMethod === 'noaux_tc' ?
      refGetMoeScores(logits, T, E, o.nGroup, o.topkGroup, o.topK, o.routedScalingFactor, bias, o.renormalize).ids :
      refMoeTopkSelect(logits, T, E, bias, o.topK, o.renormalize).ids;
}

for (const backend of ['cpu', 'composite'] as const) {
  describe(`FusedMoE layer gradients [${backend === 'cpu' ? 'cpu kernels' : 'cpu composite'}]`, () => {
    OPTION_SETS.forEach(({label, args}, index) => {
      it(`${label}: d/x and every trainable weight vs float64 central differences`, async () => {
        const rand = rng(9100 + index);
        let layer: FusedMoE | null = null;
        await expectNoLeak(async () => {
          const made = randomLayer({...args, backend}, H, rand);
          layer = made.layer;
          const data = made.data;
          const o = layer.options;
          const x = randn(rand, T * H);
          const cot = randn(rand, T * H);
          const trainable = layer.trainableWeights.map(w => w.originalName.split('/').pop()!);
          expect(trainable).not.toContain('gate_correction_bias');
          const named = layer.namedWeights() as unknown as Record<string, tf.Variable>;
          const xT = tf.tensor2d(x, [T, H]), cotT = tf.tensor2d(cot, [T, H]);
          const sources: tf.Tensor[] = [xT, ...trainable.map(n => named[n])];
          let grads: Array<Float32Array | null>;
          try {
            const {value, grads: gs} = tf.engine().gradients(
                () => tf.sum(tf.mul(layer!.apply(xT) as tf.Tensor, cotT)), sources, undefined, true);
            value.dispose();
            grads = await Promise.all(gs.map(g => g == null ? null : g.data() as Promise<Float32Array>));
            tf.dispose(gs.filter(g => g != null));
          } finally {
            tf.dispose([xT, cotT]);
          }

          const baseIds = refIds(o, data, x);
          const names = ['x', ...trainable];
          for (let i = 0; i < names.length; i++) {
            const name = names[i];
            const g = grads[i];
            expect(g).withContext(`gradient of ${name} (null: not connected to the output)`).not.toBeNull();
            if (g == null) continue;
            const base = name === 'x' ? x : data[name];
            const expected = centralDifferences(v => {
              const xs = name === 'x' ? v : x;
              const ws = name === 'x' ? data : {...data, [name]: v as unknown as Float32Array};
              const ids = refIds(o, ws, xs);
              for (let j = 0; j < ids.length; j++) {
                if (ids[j] !== baseIds[j]) throw new Error(`a step of ${name} changed the chosen experts (near tie)`);
              }
              return dot(cot, referenceOutput(o, ws, xs as Float32Array, T, H));
            }, base, 1e-5);
            expect(Math.max(...Array.from(g, Math.abs))).withContext(`|d/${name}| (every weight must learn)`)
                .toBeGreaterThan(0);
            const err = relError(g, expected);
            recordError(`layer grad [${backend}] d/${name.replace(/_weight$/, '')}`, err);
            expect(err).withContext(`${label}: d/${name} relative error vs float64 central differences`)
                .toBeLessThan(GRAD_TOL.layer);
          }
          layer.dispose();
          layer = null;
        });
        (layer as FusedMoE | null)?.dispose();
      });
    });
  });
}
