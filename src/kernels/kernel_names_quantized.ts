/**
 * Kernels over packed expert weights (docs/formats.md), the same contract style as kernel_names.ts: names plus the
 * Inputs/Attrs each backend receives after the op validated them. The QuantizedExpertWeights object is flattened
 * into its tensors (values, scales, zeroPoints) and its layout into attrs.
 */
import type {NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';

import type {ExpertWeightFormat} from './expert_weight_formats.js';

/** The layout of the packed weights, as attrs (ExpertWeightLayout of expert_weight_formats.ts). */
export interface ExpertWeightLayoutAttrs extends NamedAttrMap {
  format: ExpertWeightFormat;
  numExperts: number;
  depth: number;       // K
  width: number;       // N
  /** The weights stand for [E,N,K] (torch Linear layout) instead of [E,K,N]. */
  transposed: boolean;
  groupSize: number;   // along K; 0 for formats without scales
  zeroPoint: boolean;
}

/** The packed tensors of one QuantizedExpertWeights (absent ones omitted). */
export interface ExpertWeightInputs {
  values: TensorInfo;       // int32 packed codes (float32 [E,K,N] / [E,N,K] for 'float32')
  scales?: TensorInfo;      // float32 [E,G,N] / [E,N,G]; mxfp4: int32, E8M0 bytes packed four per word
  zeroPoints?: TensorInfo;  // float32, scales' shape (int4 with zeroPoint)
}

/** Output: float32 [E,K,N] (or [E,N,K] when transposed): the weights the packed codes stand for, exactly. */
export const DequantizeExpertWeights = 'DequantizeExpertWeights';
/** Inputs of the DequantizeExpertWeights kernel. */
export type DequantizeExpertWeightsInputs = ExpertWeightInputs;
/** Attributes of the DequantizeExpertWeights kernel. */
export type DequantizeExpertWeightsAttrs = ExpertWeightLayoutAttrs;

/**
 * Output: float32 [R,N]: batchedGemm (kernel_names.ts) with rhs = the dequantized weights, accumulated in float32
 * or better. The rhs orientation is the layout's `transposed` (the op requires transposeRhs to equal it).
 */
export const BatchedGemmQuantized = 'BatchedGemmQuantized';
export interface BatchedGemmQuantizedInputs extends ExpertWeightInputs {
  lhs: TensorInfo;       // float32 [R,K]
  segments: TensorInfo;  // int32 [E+1] expertOffsets, or [E] tokensPerExpert (see segmentsAreOffsets)
  bias?: TensorInfo;     // float32 [E,N]
}
export interface BatchedGemmQuantizedAttrs extends ExpertWeightLayoutAttrs {
  segmentsAreOffsets: boolean;
}

/**
 * Output: float32 [R,I]: fusedSwigluScale(batchedGemmQuantized(lhs, rhs, segments, bias), scale), N = 2I with the
 * gate columns first: the quantized counterpart of the fused up-projection + SwiGLU kernel.
 */
export const BatchedGemmSwigluQuantized = 'BatchedGemmSwigluQuantized';
export interface BatchedGemmSwigluQuantizedInputs extends BatchedGemmQuantizedInputs {
  scale?: TensorInfo;  // float32 [R]
}
/** Attributes of the BatchedGemmSwigluQuantized kernel (those of BatchedGemmQuantized). */
export type BatchedGemmSwigluQuantizedAttrs = BatchedGemmQuantizedAttrs;

/** The kernels of packed (half and low-bit) expert weights. */
export const QUANTIZED_MOE_KERNELS =
    [DequantizeExpertWeights, BatchedGemmQuantized, BatchedGemmSwigluQuantized] as const;
/** The name of a packed-weight kernel. */
export type QuantizedMoeKernelName = typeof QUANTIZED_MOE_KERNELS[number];
