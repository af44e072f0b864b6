/**
 * Half and low-bit expert weights (docs/formats.md): the public API and the kernels' registration. Until the op
 * and layer wiring lands, batchedGemmQuantized is the entry point for packed rhs and this module registers its
 * kernels itself.
 */
import * as tf from '@tensorflow/tfjs-core';

import {quantizedHostKernelConfigs} from './kernels/cpu/BatchedGemmQuantized.js';
import {quantizedWebGPUKernelConfigs} from './kernels/webgpu/BatchedGemmQuantized.js';

/**
 * Registers the packed-weight kernels for 'cpu' (and any other host backend named, as registerHostKernels does)
 * and 'webgpu'; a kernel already registered is left in place.
 */
export function registerQuantizedKernels(hostBackendName = 'cpu'): void {
  const configs = [...quantizedHostKernelConfigs.map(c => ({...c, backendName: hostBackendName})),
                   ...quantizedWebGPUKernelConfigs];
  for (const config of configs) {
    if (tf.getKernel(config.kernelName, config.backendName) == null) tf.registerKernel(config);
  }
}

registerQuantizedKernels();

export {batchedGemmQuantized, batchedGemmSwigluQuantized} from './ops/batched_gemm_quantized.js';
export type {BatchedGemmSwigluQuantizedOptions} from './ops/batched_gemm_quantized.js';
export {checkQuantizedExpertWeights, createExpertWeightsBuilder, dequantizeExpertWeights, expertWeightBytes,
  quantizedExpertWeightBytes, quantizeExpertWeights, quantizeExpertWeightsAsync, quantizeExpertWeightsFromArray} from
    './ops/quantize_expert_weights.js';
export type {ExpertWeightFormat, ExpertWeightsBuilder, QuantizedExpertWeights, QuantizeExpertWeightsOptions} from
    './ops/quantize_expert_weights.js';
export {EXPERT_WEIGHT_FORMATS} from './kernels/expert_weight_formats.js';
export * from './kernels/kernel_names_quantized.js';
export {setQuantizedCompositeBudget} from './kernels/composite/quantized_composite.js';
export {fromAwq, fromGptOssMxfp4, fromGptq, fromPackedHalf, transposeQuantizedExpertWeights} from
    './io/quantized_checkpoints.js';
export type {AwqTensors, GptqTensors, PackedHalfData} from './io/quantized_checkpoints.js';
