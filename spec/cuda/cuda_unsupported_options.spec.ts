/**
 * The CUDA layer executor rejects the routing options its native forward does not read yet, with an Error naming
 * the option, before any GPU work: checked here without a GPU (the check precedes the addon), and on the GPU
 * machine by the layer conformance cases marked cudaRejects.
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs} from 'tfjs-moe';
import {cudaLayerExecutor} from 'tfjs-moe/internal';

import {expectThrowsNoLeak} from '../helpers/util.js';

describe('CUDA layer executor: options it does not run yet', () => {
  const cases: Array<[Partial<FusedMoEArgs>, RegExp]> = [
    [{topkMethod: 'group_limited_greedy', nGroup: 2}, /topkMethod 'group_limited_greedy' is not supported by the CUDA/],
    [{routedScalingFactor: 2}, /routedScalingFactor with topkMethod 'greedy' is not supported by the CUDA executor yet/],
    [{renormalizeEpsilon: 1e-6}, /renormalizeEpsilon is not supported by the CUDA executor yet/],
    [{topkMethod: 'noaux_tc', renormalizeEpsilon: 0}, /renormalizeEpsilon is not supported by the CUDA executor yet/],
    [{zeroExperts: 2, useCorrectionBias: true}, /zeroExperts is not supported by the CUDA executor yet/],
  ];
  for (const [args, pattern] of cases) {
    it(`rejects ${JSON.stringify(args)}`, () => {
      const layer = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, ...args});
      layer.build([null, 5]);
      const x = tf.zeros([2, 5]) as tf.Tensor2D;
      const weights = Object.fromEntries(layer.weights.map(w => [w.originalName.split('/').pop(), w.read()]));
      try {
        expectThrowsNoLeak(() => cudaLayerExecutor.forward(x, weights as never, layer.options), pattern);
      } finally {
        x.dispose();
        layer.dispose();
      }
    });
  }
});
