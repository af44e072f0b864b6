// The shared conformance suites on the 'webgpu' backend (SwiftShader in CI, so the small scale): every op against
// the float64 reference, and the FusedMoE layer for every option, plus the layer's no-readback contract.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';

import {describeLayerConformance} from '../layers/layer_conformance.js';
import {applyAndRead, randn, randomLayer, referenceOutput} from '../layers/layer_util.js';
import {countBackendReads, relError, rng} from '../helpers/util.js';
import {describeOpConformance} from '../ops/op_conformance.js';
import {describeWebGPU, initWebGPU} from './webgpu_env.js';

/** SwiftShader compiles every new pipeline on the CPU: seconds each on CI's two cores. */
const SLOW_MS = 300_000;

describe('webgpu op conformance (small)', () => {
  let previousTimeout = 0;
  beforeAll(async () => {
    // The suite finds the backend by its factory, which tfjs-backend-webgpu registers once navigator.gpu exists.
    await initWebGPU();
    previousTimeout = jasmine.DEFAULT_TIMEOUT_INTERVAL;
    jasmine.DEFAULT_TIMEOUT_INTERVAL = SLOW_MS;
  }, SLOW_MS);
  afterAll(() => {
    jasmine.DEFAULT_TIMEOUT_INTERVAL = previousTimeout;
  });
  describeOpConformance('webgpu', {backend: 'webgpu', composite: false, scale: 'small'});
});

describeLayerConformance('webgpu kernels', {backend: 'webgpu', layerBackend: 'webgpu', small: true, init: initWebGPU,
                                            timeoutMs: SLOW_MS});

describeWebGPU('FusedMoE on webgpu', () => {
  it('performs no GPU->CPU read inside apply() (every option on)', async () => {
    const rand = rng(4242);
    const H = 8, T = 5;
    const {layer, data} = randomLayer({numExperts: 8, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 4,
      topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true, latentSize: 3, withBias: true,
      probInAdvance: true, sharedExpertIntermediateSize: 5, sharedExpertGate: true, backend: 'webgpu'}, H, rand);
    try {
      const x = randn(rand, T * H);
      await applyAndRead(layer, x, [T, H]);  // builds pipelines and anything lazily made on the first call
      const input = tf.tensor2d(x, [T, H]);
      const {result: out, reads} = countBackendReads(() => layer.apply(input) as tf.Tensor);
      expect(reads).withContext('backend reads during apply()').toBe(0);
      const got = await out.data();
      tf.dispose([input, out]);
      expect(relError(got, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(1e-4);
    } finally {
      layer.dispose();
    }
  }, SLOW_MS);
});
