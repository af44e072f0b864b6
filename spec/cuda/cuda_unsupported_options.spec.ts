/**
 * The CUDA layer executor's one option check (unsupportedByCuda), without a GPU (it precedes the addon): every
 * option setting of the table that the native forward runs passes; a setting it does not run (an enum value the
 * addon lacks, or a non-native option away from its default) is refused before any upload or GPU work, with one
 * Error naming each such option and its value.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs, FusedMoEOptions} from 'tfjs-moe';
import {cudaLayerExecutor, unsupportedByCuda} from 'tfjs-moe/internal';

import {expectThrowsNoLeak} from '../helpers/util.js';

function resolved(args: Partial<FusedMoEArgs>): FusedMoEOptions {
  return new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, ...args}).options;
}

describe('CUDA layer executor: the option check', () => {
  const runs: Array<Partial<FusedMoEArgs>> = [
    {topkMethod: 'group_limited_greedy', nGroup: 2}, {routedScalingFactor: 2}, {renormalizeEpsilon: 1e-6},
    {topkMethod: 'noaux_tc', renormalizeEpsilon: 0}, {zeroExperts: 2, useCorrectionBias: true},
    {routerBias: true, activation: 'clamped_swiglu', swigluAlpha: 1.3, swigluLimit: 0.5, withBias: true},
    {routingWeightOn: 'input'}, {routingWeightOn: 'activation'}, {expertWeightFormat: 'int4'},
    {computeDtype: 'bfloat16', backend: 'cuda'},
  ];
  for (const args of runs) {
    it(`runs ${JSON.stringify(args)} natively (nothing refused)`, () => {
      expect(unsupportedByCuda(resolved(args))).toBeNull();
    });
  }

  it('refuses an enum value the addon does not implement, naming the option and value, before any GPU work', () => {
    const layer = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3});
    layer.build([null, 5]);
    const x = tf.zeros([2, 5]) as tf.Tensor2D;
    const weights = Object.fromEntries(layer.weights.map(w => [w.originalName.split('/').pop(), w.read()]));
    // A value a future option table might add before the addon implements it.
    const options = {...layer.options, topkMethod: 'future_method', activation: 'future_activation'} as unknown as
        FusedMoEOptions;
    try {
      expectThrowsNoLeak(() => cudaLayerExecutor.forward(x, weights as never, options),
          /^FusedMoE backend 'cuda': option 'topkMethod' = "future_method", option 'activation' = "future_activation" are not supported by the CUDA executor yet; use backend 'cpu', 'webgpu' or 'composite'$/);
    } finally {
      x.dispose();
      layer.dispose();
    }
  });
});
