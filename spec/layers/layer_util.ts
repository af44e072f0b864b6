/** Helpers for the FusedMoE specs: random layers, their weights as the float64 reference wants them. */
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import {FusedMoE, FusedMoEArgs, FusedMoEOptions} from 'tfjs-moe';

import {randn, relError} from '../helpers/util.js';
import {refFusedMoE, RefMoeOptions, RefMoeWeights} from '../reference/moe_reference.js';

export type WeightData = Record<string, Float32Array>;

/** Builds a layer for hidden size H and fills EVERY weight (biases, correction bias included) with random values. */
export function randomLayer(args: FusedMoEArgs, H: number, rand: () => number): {layer: FusedMoE, data: WeightData} {
  const layer = new FusedMoE(args).buildFor(H);
  const data: WeightData = {};
  const values: Record<string, tf.Tensor> = {};
  for (const [name, current] of Object.entries(layer.namedWeights())) {
    // Router weights spread wider so that routing has clear winners; biases small but non-zero.
    const scale = name === 'gate_weight' ? 0.8 : name.endsWith('bias') ? 0.2 : 0.4;
    data[name] = randn(rand, (current as tf.Tensor).size, scale);
    values[name] = tf.tensor(data[name], (current as tf.Tensor).shape);
  }
  layer.setNamedWeights(values);
  tf.dispose(Object.values(values));
  return {layer, data};
}

export function refConfig(o: FusedMoEOptions): RefMoeOptions {
  return {
    numExperts: o.numExperts, topK: o.topK, intermediateSize: o.moeIntermediateSize, topkMethod: o.topkMethod,
    nGroup: o.nGroup, topkGroup: o.topkGroup, routedScalingFactor: o.routedScalingFactor, renormalize: o.renormalize,
    ...(o.renormalizeEpsilon === null ? {} : {renormalizeEpsilon: o.renormalizeEpsilon}), zeroExperts: o.zeroExperts,
    useCorrectionBias: o.useCorrectionBias, latentSize: o.latentSize, withBias: o.withBias,
    probInAdvance: o.probInAdvance, sharedExpertIntermediateSize: o.sharedExpertIntermediateSize,
    sharedExpertGate: o.sharedExpertGate, routerBias: o.routerBias, activation: o.activation,
    routingWeightOn: o.routingWeightOn === 'input' ? 'input' : 'output',
    swigluAlpha: o.swigluAlpha, swigluLimit: o.swigluLimit, sparsemixerEpsilon: o.sparsemixerEpsilon,
  };
}

export function refWeights(d: WeightData): RefMoeWeights {
  return {
    gateWeight: d.gate_weight, gateBias: d.gate_bias, gateCorrectionBias: d.gate_correction_bias, upGateProjWeight: d.up_gate_proj_weight,
    upGateProjBias: d.up_gate_proj_bias, downProjWeight: d.down_proj_weight, downProjBias: d.down_proj_bias,
    fc1LatentProjWeight: d.fc1_latent_proj_weight, fc2LatentProjWeight: d.fc2_latent_proj_weight,
    sharedUpGateProjWeight: d.shared_up_gate_proj_weight, sharedDownProjWeight: d.shared_down_proj_weight,
    sharedExpertGateWeight: d.shared_expert_gate_weight,
  };
}

/** The float64 reference output of a layer with these options and weights on x [T,H]. */
export function referenceOutput(o: FusedMoEOptions, d: WeightData, x: Float32Array, T: number, H: number): Float64Array {
  return refFusedMoE(x, T, H, refWeights(d), refConfig(o));
}

/** The layer's current weights as Float32Arrays by name. */
export async function readWeights(layer: FusedMoE): Promise<WeightData> {
  const data: WeightData = {};
  for (const [name, t] of Object.entries(layer.namedWeights())) data[name] = await (t as tf.Tensor).data() as Float32Array;
  return data;
}

/** The layer's weights as the reference wants them, packed expert weights dequantized (docs/formats.md). */
export async function dequantizedWeights(layer: FusedMoE): Promise<WeightData> {
  const data: WeightData = {};
  for (const [name, w] of Object.entries(layer.namedWeights())) {
    const t = w instanceof tf.Tensor ? w : moe.dequantizeExpertWeights(w as moe.QuantizedExpertWeights);
    data[name] = await t.data() as Float32Array;
    if (t !== w) t.dispose();
  }
  return data;
}

/** Applies the layer to x (shape as given), reads the result asynchronously, and disposes what it made. */
export async function applyAndRead(layer: FusedMoE, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const input = tf.tensor(x, shape);
  const out = layer.apply(input) as tf.Tensor;
  expect(out.shape).withContext('output shape').toEqual(shape);
  const data = await out.data() as Float32Array;
  input.dispose();
  out.dispose();
  return data;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export {randn, relError};
