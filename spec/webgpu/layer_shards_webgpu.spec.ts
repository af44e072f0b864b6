// FusedMoE on webgpu with expert weights over the storage-binding limit (forced small here): the layer keeps
// expert-range shards of its weights per layer, made once without reading back, re-made when the weights change,
// freed on dispose; its documented weights keep their full shapes, and training still reaches the variables.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';

import {countBackendReads, recordError, relError, rng} from '../helpers/util.js';
import {randn, randomLayer, referenceOutput, WeightData} from '../layers/layer_util.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW_MS = 300_000;
const TOLERANCE = 1e-4;

describeWebGPU('FusedMoE on webgpu with sharded expert weights', () => {
  // E 6, H 8, I 4: up_gate 256 B and down 128 B per expert; a 600 B limit gives 3 + 2 shards.
  const E = 6, H = 8, I = 4, T = 7;
  const SHARDS = 3 + 2;

  afterEach(() => internal.setMaxStorageBindingBytes(null));
  // About the op chain's expert-range cache: the decode path (which never shards) stays off here.
  let decodeMaxTokens = 0;
  beforeAll(() => { decodeMaxTokens = moe.webgpuDecodeMaxTokens(); moe.setWebGPUDecodeMaxTokens(0); });
  afterAll(() => moe.setWebGPUDecodeMaxTokens(decodeMaxTokens));

  it('matches the float64 reference, reads nothing back, re-shards on a weight change, frees on dispose',
     async () => {
       const rand = rng(606);
       const baseline = tf.memory().numTensors;
       const {layer, data} = randomLayer({numExperts: E, topK: 2, moeIntermediateSize: I, withBias: true,
         probInAdvance: true, backend: 'webgpu'}, H, rand);
       internal.setMaxStorageBindingBytes(600);
       const withWeights = tf.memory().numTensors;

       const run = async (weights: WeightData, label: string) => {
         const x = randn(rand, T * H);
         const input = tf.tensor2d(x, [T, H]);
         const {result: out, reads} = countBackendReads(() => layer.apply(input) as tf.Tensor);
         expect(reads).withContext(`${label}: backend reads during apply()`).toBe(0);
         const got = await out.data();
         tf.dispose([input, out]);
         const err = relError(got, referenceOutput(layer.options, weights, x, T, H));
         recordError('FusedMoE webgpu sharded weights', err);
         expect(err).withContext(label).toBeLessThan(TOLERANCE);
         // The shards are the only tensors a call leaves: one per expert range of each expert weight.
         expect(tf.memory().numTensors).withContext(`${label}: tensors kept`).toBe(withWeights + SHARDS);
       };

       try {
         await run(data, 'first call (makes the shards)');
         await run(data, 'second call (reuses them)');

         // The documented weights keep their full shapes.
         const named = layer.namedWeights();
         expect(named.up_gate_proj_weight.shape).toEqual([E, H, 2 * I]);
         expect(named.down_proj_weight.shape).toEqual([E, I, H]);
         expect(layer.getWeights().map(w => w.shape)).toContain([E, H, 2 * I]);

         // New expert weights: the next call must see them (stale shards would give the old output).
         const changed: WeightData = {...data, up_gate_proj_weight: randn(rand, E * H * 2 * I, 0.4),
                                      down_proj_weight: randn(rand, E * I * H, 0.4)};
         const values = {up_gate_proj_weight: tf.tensor3d(changed.up_gate_proj_weight, [E, H, 2 * I]),
                         down_proj_weight: tf.tensor3d(changed.down_proj_weight, [E, I, H])};
         layer.setNamedWeights(values);
         tf.dispose(Object.values(values));
         await run(changed, 'after setNamedWeights');

         // Raising the limit past the weights frees the shards at the next call.
         internal.setMaxStorageBindingBytes(1 << 20);
         const input = tf.tensor2d(randn(rand, T * H), [T, H]);
         tf.dispose([layer.apply(input) as tf.Tensor, input]);
         expect(tf.memory().numTensors).withContext('limit raised').toBe(withWeights);
         internal.setMaxStorageBindingBytes(600);
         await run(changed, 'limit lowered again');
       } finally {
         layer.dispose();
       }
       expect(tf.memory().numTensors).withContext('after dispose').toBe(baseline);
     }, SLOW_MS);

  it('trains through the full variables (no shards while a tape records)', async () => {
    const rand = rng(707);
    const baseline = tf.memory().numTensors;
    const {layer} = randomLayer({numExperts: E, topK: 2, moeIntermediateSize: I, backend: 'webgpu'}, H, rand);
    internal.setMaxStorageBindingBytes(600);
    try {
      const input = tf.tensor2d(randn(rand, T * H), [T, H]);
      const before = tf.memory().numTensors;
      const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(input, {training: true}) as tf.Tensor));
      const names = Object.keys(grads);
      const upGate = names.find(n => n.endsWith('up_gate_proj_weight'));
      expect(upGate).withContext(`gradient names ${names}`).toBeDefined();
      expect(grads[upGate!].shape).toEqual([E, H, 2 * I]);
      const normTensor = tf.tidy(() => tf.sum(tf.abs(grads[upGate!])));
      const norm = await normTensor.data();
      normTensor.dispose();
      expect(norm[0]).withContext('|d loss / d up_gate_proj_weight|').toBeGreaterThan(0);
      tf.dispose([value, input, ...Object.values(grads)]);
      expect(tf.memory().numTensors).withContext('no shards kept by a training call').toBe(before - 1);
    } finally {
      layer.dispose();
    }
    expect(tf.memory().numTensors).toBe(baseline);
  }, SLOW_MS);
});
