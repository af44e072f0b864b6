/**
 * Half and low-bit expert weights (docs/formats.md): the public API. Until the op and layer wiring lands,
 * batchedGemmQuantized / batchedGemmSwigluQuantized are the entry points for a packed rhs. (The kernels register
 * with the others: kernels/cpu/register_all.ts, kernels/webgpu/register_all.ts.)
 */
export {batchedGemmQuantized, batchedGemmSwigluQuantized} from './ops/batched_gemm_quantized.js';
export type {BatchedGemmSwigluQuantizedOptions} from './ops/batched_gemm_quantized.js';
export {checkQuantizedExpertWeights, createExpertWeightsBuilder, dequantizeExpertWeights, expertWeightBytes,
  quantizedExpertWeightBytes, quantizeExpertWeights, quantizeExpertWeightsAsync, quantizeExpertWeightsFromArray} from
    './ops/quantize_expert_weights.js';
export type {ExpertWeightFormat, ExpertWeightsBuilder, QuantizedExpertWeights, QuantizeExpertWeightsOptions} from
    './ops/quantize_expert_weights.js';
export {EXPERT_WEIGHT_FORMATS} from './kernels/expert_weight_formats.js';
export type {ExpertWeightLayout} from './kernels/expert_weight_formats.js';
export * from './kernels/kernel_names_quantized.js';
export {setQuantizedCompositeBudget} from './kernels/composite/quantized_composite.js';
export {fromAwq, fromGptOssMxfp4, fromGptq, fromPackedHalf, transposeQuantizedExpertWeights} from
    './io/quantized_checkpoints.js';
export type {AwqTensors, GptqTensors, Int4CheckpointTensors, PackedHalfData} from './io/quantized_checkpoints.js';
