import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {logicalShape} from '../expert_weight_formats.js';
import {DequantizeExpertWeights, DequantizeExpertWeightsAttrs, DequantizeExpertWeightsInputs} from '../kernel_names_quantized.js';
import {dequantizeExpertWeightsImpl} from './dequantize_expert_weights_impl.js';
import {makeOutput} from '../host_data.js';
import {readExpertWeights} from './host_expert_weights.js';

export const dequantizeExpertWeights: KernelFunc = ({inputs, backend, attrs}) => {
  const {layout, data} = readExpertWeights(
      backend, inputs as unknown as DequantizeExpertWeightsInputs, attrs as unknown as DequantizeExpertWeightsAttrs);
  return makeOutput(backend, logicalShape(layout), 'float32', dequantizeExpertWeightsImpl(layout, data));
};

export const dequantizeExpertWeightsConfig: KernelConfig =
    {kernelName: DequantizeExpertWeights, backendName: 'cpu', kernelFunc: dequantizeExpertWeights};
