/**
 * Half and low-bit expert weights (docs/formats.md): the public API and the kernels' registration. Until the op
 * and layer wiring lands, batchedGemmQuantized is the entry point for packed rhs and this module registers its
 * kernels itself.
 */
import {registerKernel} from '@tensorflow/tfjs-core';

import {batchedGemmQuantizedConfig} from './kernels/cpu/BatchedGemmQuantized.js';
import {dequantizeExpertWeightsConfig} from './kernels/cpu/DequantizeExpertWeights.js';
import {batchedGemmQuantizedWebGPUConfig, dequantizeExpertWeightsWebGPUConfig} from './kernels/webgpu/BatchedGemmQuantized.js';

for (const config of [batchedGemmQuantizedConfig, dequantizeExpertWeightsConfig, batchedGemmQuantizedWebGPUConfig,
                      dequantizeExpertWeightsWebGPUConfig]) {
  registerKernel(config);
}

export {batchedGemmQuantized} from './ops/batched_gemm_quantized.js';
export {checkQuantizedExpertWeights, dequantizeExpertWeights, expertWeightBytes, quantizedExpertWeightBytes,
  quantizeExpertWeights, quantizeExpertWeightsAsync, quantizeExpertWeightsFromArray} from './ops/quantize_expert_weights.js';
export type {ExpertWeightFormat, QuantizedExpertWeights, QuantizeExpertWeightsOptions} from './ops/quantize_expert_weights.js';
export {EXPERT_WEIGHT_FORMATS, floatToBfloat16Bits, floatToHalfBits} from './kernels/expert_weight_formats.js';
export * from './kernels/kernel_names_quantized.js';
export {fromAwq, fromGptOssMxfp4, fromGptq, fromPackedHalf, transposeQuantizedExpertWeights} from './io/quantized_checkpoints.js';
export type {AwqTensors, GptqTensors, PackedHalfData} from './io/quantized_checkpoints.js';
