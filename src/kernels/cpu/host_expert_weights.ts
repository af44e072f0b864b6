/** Host arrays and layout of the packed expert weights a quantized kernel receives. */
import type {ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';
import type {ExpertWeightInputs, ExpertWeightLayoutAttrs} from '../kernel_names_quantized.js';
import {readFloat32, readInt32} from '../host_data.js';

export function expertWeightLayout(attrs: ExpertWeightLayoutAttrs): ExpertWeightLayout {
  const {format, numExperts, depth, width, transposed, groupSize, zeroPoint} = attrs;
  return {format, numExperts, depth, width, transposed, groupSize, zeroPoint};
}

export function readExpertWeights(backend: unknown, inputs: ExpertWeightInputs, attrs: ExpertWeightLayoutAttrs):
    {layout: ExpertWeightLayout, data: ExpertWeightData} {
  const layout = expertWeightLayout(attrs);
  const {format} = attrs;
  const data: ExpertWeightData = {
    values: format === 'float32' ? readFloat32(backend, inputs.values) : readInt32(backend, inputs.values),
    scales: inputs.scales == null ? null :
        format === 'mxfp4' ? readInt32(backend, inputs.scales) : readFloat32(backend, inputs.scales),
    zeroPoints: inputs.zeroPoints == null ? null : readFloat32(backend, inputs.zeroPoints),
  };
  return {layout, data};
}
