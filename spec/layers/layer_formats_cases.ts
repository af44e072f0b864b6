// The expert weight formats a FusedMoE spec runs through (cpu, composite, webgpu share them).
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import type {ExpertWeightFormat, FusedMoEArgs} from 'tfjs-moe';

import {randn} from '../helpers/util.js';
import type {WeightData} from './layer_util.js';

export interface LayerFormatVariant {
  label: string;
  format: ExpertWeightFormat;
  groupSize?: number;
  zeroPoint?: boolean;
}

export const LAYER_FORMAT_VARIANTS: LayerFormatVariant[] = [
  {label: 'float32', format: 'float32'},
  {label: 'float16', format: 'float16'},
  {label: 'bfloat16', format: 'bfloat16'},
  {label: 'int8', format: 'int8'},
  {label: 'int8 g8', format: 'int8', groupSize: 8},
  {label: 'int4 g32', format: 'int4'},
  {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
  {label: 'mxfp4', format: 'mxfp4'},
];

export function layerFormatArgs(v: LayerFormatVariant): Partial<FusedMoEArgs> {
  return {expertWeightFormat: v.format, quantGroupSize: v.groupSize ?? null, quantZeroPoint: v.zeroPoint ?? false};
}

/**
 * A layer whose routed experts are stored in format v (quantized on the GPU from random float32), and its weights
 * as float32 with the experts dequantized: what the float64 reference is evaluated on (docs/formats.md).
 */
export async function packedLayer(args: FusedMoEArgs, H: number, v: LayerFormatVariant, rand: () => number):
    Promise<{layer: moe.FusedMoE, data: WeightData}> {
  const layer = new moe.FusedMoE({...args, ...layerFormatArgs(v), backend: 'webgpu'}).buildFor(H);
  const values: Record<string, tf.Tensor | moe.QuantizedExpertWeights> = {};
  for (const spec of moe.weightSpecs(layer.options, H)) {
    const scale = spec.name === 'gate_weight' ? 0.8 : spec.name.endsWith('bias') ? 0.2 : 0.4;
    const w = tf.tensor(randn(rand, spec.shape.reduce((a, b) => a * b, 1), scale), spec.shape);
    const routed = spec.name === 'up_gate_proj_weight' || spec.name === 'down_proj_weight';
    values[spec.name] = routed && v.format !== 'float32' ? await moe.quantizeExpertWeightsAsync(w as tf.Tensor3D,
        v.format, {groupSize: v.groupSize, zeroPoint: v.zeroPoint}) : w;
    if (values[spec.name] !== w) w.dispose();
  }
  layer.setNamedWeights(values);
  tf.dispose(Object.values(values) as unknown as tf.TensorContainer);
  const data: WeightData = {};
  for (const [name, w] of Object.entries(layer.namedWeights())) {
    const t = w instanceof tf.Tensor ? w : moe.dequantizeExpertWeights(w as moe.QuantizedExpertWeights);
    data[name] = await t.data() as Float32Array;
    if (t !== w) t.dispose();
  }
  return {layer, data};
}
