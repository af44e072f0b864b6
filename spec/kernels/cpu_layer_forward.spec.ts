// The cpu backend's whole-layer forward (src/kernels/cpu/layer_forward.ts): a FusedMoE layer on backend 'cpu'
// takes it for the options it has steps for; its output is bitwise the op chain's (MOE_CPU_LAYER_FORWARD false
// runs the op chain) and within the layer tolerance of the float64 reference (on the dequantized weights for the
// packed formats), with the wasm kernels and with the JavaScript fallback (MOE_WASM false); it declines the
// options it has no steps for, load balancing and the gradient tape; nothing leaks.
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs} from 'tfjs-moe';
import {cpuLayerForwardCount, cpuLayerUnsupportedReason, MOE_CPU_LAYER_FORWARD} from 'tfjs-moe/internal';

import {expectNoLeak, randInt, recordError, relError, rng, withFlags} from '../helpers/util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {applyAndRead, dequantizedWeights, randn, randomLayer, referenceOutput, WeightData} from '../layers/layer_util.js';

interface Case {
  name: string;
  args: (E: number) => Partial<FusedMoEArgs>;
}

/** Options the path runs (every step of the op chain it replaces is exercised by one of them). */
const TAKEN: Case[] = [
  {name: 'greedy, renormalized', args: () => ({})},
  {name: 'greedy, not renormalized, correction bias', args: () => ({renormalize: false, useCorrectionBias: true})},
  {name: 'rsf 2.5, renormalizeEpsilon 1e-6', args: () => ({routedScalingFactor: 2.5, renormalizeEpsilon: 1e-6})},
  {name: 'group_limited_greedy, not renormalized, rsf 16',
    args: () => ({topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 1, renormalize: false,
      routedScalingFactor: 16})},
  {name: 'zero experts, correction bias, rsf 1.6', args: E => ({zeroExperts: Math.max(1, E / 2),
    useCorrectionBias: true, renormalize: false, routedScalingFactor: 1.6})},
  {name: 'sparsemixer eps 0.1', args: () => ({topkMethod: 'sparsemixer', topK: 2, sparsemixerEpsilon: 0.1})},
  {name: 'router bias, expert biases', args: () => ({routerBias: true, withBias: true})},
  {name: 'routingWeightOn input, router bias', args: () => ({routingWeightOn: 'input', routerBias: true})},
  {name: 'probInAdvance, expert biases', args: () => ({probInAdvance: true, withBias: true})},
  {name: 'routingWeightOn activation, zero experts', args: E => ({routingWeightOn: 'activation', zeroExperts: E / 4})},
  {name: 'int8 g32 experts, biases', args: () => ({expertWeightFormat: 'int8', quantGroupSize: 32, withBias: true})},
  {name: 'int4 g32 experts', args: () => ({expertWeightFormat: 'int4', quantGroupSize: 32})},
  {name: 'int8 per column', args: () => ({expertWeightFormat: 'int8'})},
  {name: 'int4 g32 zero points (JavaScript GEMMs inside the path)',
    args: () => ({expertWeightFormat: 'int4', quantGroupSize: 32, quantZeroPoint: true})},
];

/** Options it leaves to the op chain. */
const DECLINED: Case[] = [
  {name: 'noaux_tc', args: () => ({topkMethod: 'noaux_tc'})},
  {name: 'latent', args: () => ({latentSize: 6})},
  {name: 'shared experts', args: () => ({sharedExpertIntermediateSize: 5})},
  {name: 'clamped SwiGLU', args: () => ({activation: 'clamped_swiglu'})},
];

/** A random float layer's weights set into a layer of the packed format (setNamedWeights quantizes them). */
function packedLayer(args: FusedMoEArgs, H: number, rand: () => number): {layer: FusedMoE, data: WeightData} {
  const {expertWeightFormat, quantGroupSize, quantZeroPoint, ...floatArgs} = args;
  const {layer: source, data} = randomLayer(floatArgs, H, rand);
  const layer = new FusedMoE({...args, expertWeightFormat, quantGroupSize, quantZeroPoint}).buildFor(H);
  const values: Record<string, tf.Tensor> = {};
  for (const [name, t] of Object.entries(source.namedWeights())) values[name] = tf.tensor(data[name], (t as tf.Tensor).shape);
  layer.setNamedWeights(values);
  tf.dispose(Object.values(values));
  source.dispose();
  return {layer, data};
}

/** A random layer of the case: its output with the path (checked to run) and without, and the reference's. */
async function runCase(c: Case, seed: number, tokens: [number, number]) {
  const rand = rng(seed);
  const E = 4 * randInt(rand, 1, 4);
  const args = c.args(E);
  const packed = args.expertWeightFormat != null;
  // Packed formats: H and I multiples of the group (the wasm kernels take whole groups only).
  const H = packed ? 32 * randInt(rand, 1, 3) : randInt(rand, 3, 40);
  const I = packed ? 32 * randInt(rand, 1, 2) : randInt(rand, 2, 24);
  const T = randInt(rand, tokens[0], tokens[1]);
  const k = randInt(rand, 1, Math.min(3, E / 2));
  const layerArgs: FusedMoEArgs = {numExperts: E, topK: k, moeIntermediateSize: I, backend: 'cpu', ...args};
  const {layer, data} = packed ? packedLayer(layerArgs, H, rand) : randomLayer(layerArgs, H, rand);
  try {
    const x = randn(rand, T * H);
    const before = cpuLayerForwardCount();
    const withPath = await expectNoLeak(() => applyAndRead(layer, x, [T, H]));
    const took = cpuLayerForwardCount() - before;
    const opChain = await withFlags({[MOE_CPU_LAYER_FORWARD]: false}, () => applyAndRead(layer, x, [T, H]));
    const stillOne = cpuLayerForwardCount() - before;
    const expected = referenceOutput(layer.options, packed ? await dequantizedWeights(layer) : data, x, T, H);
    return {withPath, opChain, expected, took, stillOne, label: `E=${E} k=${k} H=${H} I=${I} T=${T}`};
  } finally {
    layer.dispose();
  }
}

describe('cpu whole-layer forward (bitwise the op chain; vs float64 reference)', () => {
  let previousBackend = '';
  beforeAll(async () => {
    previousBackend = tf.getBackend();
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend(previousBackend);
  });

  for (const wasm of [true, false]) {
    const label = wasm ? 'wasm kernels' : 'JavaScript kernels (MOE_WASM false)';
    TAKEN.forEach((c, i) => {
      it(`${c.name} [${label}]: taken, bitwise the op chain, within ${LAYER_TOLERANCE} of the reference`, async () => {
        await withFlags({MOE_WASM: wasm}, async () => {
          for (const [s, tokens] of [[1, [1, 3]], [2, [4, 40]]] as Array<[number, [number, number]]>) {
            const r = await runCase(c, 6133 * (i + 1) + s + (wasm ? 0 : 50), tokens);
            expect(r.took).withContext(`${r.label}: the path ran`).toBe(1);
            expect(r.stillOne).withContext(`${r.label}: the flag turns it off`).toBe(1);
            expect(Array.from(r.withPath)).withContext(`${r.label}: bitwise the op chain`).toEqual(Array.from(r.opChain));
            const err = relError(r.withPath, r.expected);
            recordError(`cpu layer forward [${label}]`, err);
            expect(err).withContext(`${r.label}: relative error`).toBeLessThan(LAYER_TOLERANCE);
          }
        });
      });
    });
  }

  DECLINED.forEach((c, i) => {
    it(`declines ${c.name} (the op chain runs it, correct)`, async () => {
      const r = await runCase(c, 977 * (i + 1), [1, 5]);
      expect(r.took).withContext(r.label).toBe(0);
      expect(relError(r.withPath, r.expected)).withContext(r.label).toBeLessThan(LAYER_TOLERANCE);
    });
  });

  it('names why it declines, and declines load balancing and the gradient tape', async () => {
    const rand = rng(4242);
    const H = 12;
    const {layer} = randomLayer({numExperts: 8, topK: 2, moeIntermediateSize: 6, backend: 'cpu', topkMethod: 'noaux_tc'}, H, rand);
    const x = tf.tensor2d(randn(rand, 3 * H), [3, H]);
    expect(cpuLayerUnsupportedReason(x, layer.namedWeights(), layer.options)).toBe('noaux_tc routing');
    layer.dispose();
    const {layer: plain} = randomLayer({numExperts: 8, topK: 2, moeIntermediateSize: 6, backend: 'cpu'}, H, rand);
    expect(cpuLayerUnsupportedReason(x, plain.namedWeights(), plain.options)).toBeNull();
    const before = cpuLayerForwardCount();
    // Under a gradient tape the op chain runs (it differentiates); the gradient reaches x.
    const grad = tf.grad((input: tf.Tensor) => tf.sum(plain.apply(input) as tf.Tensor))(x);
    expect(cpuLayerForwardCount()).withContext('no path under the tape').toBe(before);
    expect(grad.shape).toEqual([3, H]);
    grad.dispose();
    // Load balancing reads the routing back: the op chain gives it, so the path declines.
    const balanced = new FusedMoE({numExperts: 8, topK: 2, moeIntermediateSize: 6, backend: 'cpu', auxLossCoef: 0.02})
        .buildFor(H);
    const y = balanced.apply(x, {training: true}) as tf.Tensor;
    expect(cpuLayerForwardCount()).withContext('no path when the balancer reads the routing').toBe(before);
    y.dispose();
    balanced.dispose();
    x.dispose();
    plain.dispose();
  });
});
