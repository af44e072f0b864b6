/**
 * Half and low-bit expert weights (docs/formats.md): the public API. batchedGemm and batchedGemmSwiglu take a
 * QuantizedExpertWeights as rhs; FusedMoE stores its experts in the format of its expertWeightFormat option. (The
 * kernels register with the others: kernels/cpu/register_all.ts, kernels/webgpu/register_all.ts.)
 */
export {checkQuantizedExpertWeights, createExpertWeightsBuilder, dequantizeExpertWeights, expertWeightBytes,
  quantizedExpertWeightBytes, quantizeExpertWeights, quantizeExpertWeightsAsync, quantizeExpertWeightsFromArray} from
    './ops/quantize_expert_weights.js';
export type {ExpertWeightFormat, ExpertWeightsBuilder, QuantizedExpertWeights, QuantizeExpertWeightsOptions} from
    './ops/quantize_expert_weights.js';
export {EXPERT_WEIGHT_FORMATS, isQuantizedExpertWeights} from './executor/expert_weights.js';
export type {ExpertWeightLayout} from './kernels/expert_weight_formats.js';
export * from './kernels/kernel_names_quantized.js';
export {MOE_QUANTIZED_COMPOSITE_BUDGET, setQuantizedCompositeBudget} from './kernels/composite/quantized_composite.js';
export {fromAwq, fromGptOssMxfp4, fromGptq, fromPackedHalf, transposeQuantizedExpertWeights} from
    './io/quantized_checkpoints.js';
export type {AwqTensors, GptOssMxfp4Options, GptqTensors, Int4CheckpointTensors, PackedHalfData} from
    './io/quantized_checkpoints.js';
