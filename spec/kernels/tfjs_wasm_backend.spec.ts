// Our host kernels and the cpu whole-layer forward registered for @tensorflow/tfjs-backend-wasm's 'wasm' backend
// (a devDependency here, never a dependency of the package): the op conformance suite and the FusedMoE layer
// conformance (backend 'auto' picks our kernels there) against the float64 reference, small scale; the layer's
// packed experts live in our module's memory (the wasm backend's tensors are read only to pack them).
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import {cpuLayerForwardCount} from 'tfjs-moe/internal';

import {expectNoLeak, relError, rng} from '../helpers/util.js';
import {describeLayerConformance, LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {applyAndRead, randn, randomLayer, referenceOutput} from '../layers/layer_util.js';
import {describeOpConformance} from '../ops/op_conformance.js';

describeOpConformance('tfjs-backend-wasm', {backend: 'wasm', composite: false, scale: 'small', wasm: true});
describeLayerConformance('tfjs-backend-wasm auto', {backend: 'wasm', layerBackend: 'auto', small: true,
  // The whole-layer forward computes probInAdvance's row weights itself; where it declines, the op chain's
  // tf.unsortedSegmentSum has no kernel in tfjs-backend-wasm 4.22.
  pendingReason: a => (a.probInAdvance || a.routingWeightOn === 'activation') && (a.latentSize != null ||
      (a.sharedExpertIntermediateSize ?? 0) > 0 || a.topkMethod === 'noaux_tc' || (a.activation ?? 'swiglu') !== 'swiglu') ?
      'tfjs-backend-wasm 4.22 has no UnsortedSegmentSum kernel, which the op chain\'s probInAdvance uses (this ' +
      'case runs on cpu, composite and webgpu)' : null});

describe('FusedMoE on tfjs-backend-wasm', () => {
  let previousBackend = '';
  beforeAll(async () => {
    previousBackend = tf.getBackend();
    if (!await tf.setBackend('wasm')) throw new Error('tfjs-backend-wasm failed to initialise');
  });
  afterAll(async () => {
    await tf.setBackend(previousBackend);
  });

  it('runs our kernels and the whole-layer forward; the experts are packed once, freed with the layer', async () => {
    const rand = rng(31337);
    const H = 24, T = 3;
    const {layer, data} = randomLayer({numExperts: 8, topK: 2, moeIntermediateSize: 10}, H, rand);
    expect(layer.selectedPath()).toBe('kernels:wasm');
    moe.clearWasmWeightCache();
    const x = randn(rand, T * H);
    const before = cpuLayerForwardCount();
    const first = await expectNoLeak(() => applyAndRead(layer, x, [T, H]));
    expect(cpuLayerForwardCount() - before).withContext('the whole-layer forward ran').toBe(1);
    const packed = moe.wasmWeightCacheBytes();
    expect(packed).withContext('experts packed in our module').toBeGreaterThan(0);
    const again = await applyAndRead(layer, x, [T, H]);
    expect(moe.wasmWeightCacheBytes()).withContext('nothing packed twice').toBe(packed);
    expect(Array.from(again)).toEqual(Array.from(first));
    expect(relError(first, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(LAYER_TOLERANCE);
    layer.dispose();
    // The next call sweeps the packed copies of disposed tensors (the wasm backend's dataIdMap tells).
    const {layer: other} = randomLayer({numExperts: 4, topK: 1, moeIntermediateSize: 6}, H, rand);
    await applyAndRead(other, x, [T, H]);
    expect(moe.wasmWeightCacheBytes()).withContext('the disposed layer\'s experts are freed').toBeLessThan(packed);
    other.dispose();
  });
});
