/**
 * Kernel names and the Inputs/Attrs each kernel receives: the one contract shared by the ops (which validate
 * and call runKernel) and every backend's kernels (which trust what the op checked).
 * Optional inputs are omitted from the inputs map when absent (never passed as null).
 */
import type {NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';

import type {SwigluActivation} from '../executor/layer_schema.js';
import type {QuantizedMoeKernelName} from './kernel_names_quantized.js';

/** The two routing methods (docs/semantics.md sections 1 and 2), by the layer's topkMethod values. */
export type {TopkMethod} from '../executor/layer_schema.js';

/** Outputs: [topkIds int32 [T,k], topkWeights float32 [T,k]]. */
export const MoeTopkSelect = 'MoeTopkSelect';
/** Inputs of the MoeTopkSelect kernel. */
export interface MoeTopkSelectInputs {
  gatingLogits: TensorInfo;  // float32 [T,E]
  bias?: TensorInfo;         // float32 [E], selection only
}
/** Attributes of the MoeTopkSelect kernel. */
export interface MoeTopkSelectAttrs extends NamedAttrMap {
  topK: number;
  renormalize: boolean;
  /** Renormalised weights are w / max(sum + renormalizeEpsilon, 1e-12); the op's own rule is 0. */
  renormalizeEpsilon: number;
  routedScalingFactor: number;
  /** Group-limited selection (DeepSeek-V2) when nGroup > 1; 1/1: every expert is a candidate. */
  nGroup: number;
  topkGroup: number;
  /** 'greedy': softmax top-k; 'sparsemixer': PhiMoE's two masked-softmax rounds (topK 2, nGroup 1, no bias). */
  topkMethod: MoeTopkSelectMethod;
  /** sparsemixer: the relative mask threshold is 2 * sparsemixerEpsilon (docs/semantics.md 11.8). */
  sparsemixerEpsilon: number;
}
/** The methods moeTopkSelect runs (group_limited_greedy is 'greedy' with nGroup > 1). */
export type MoeTopkSelectMethod = 'greedy' | 'sparsemixer';

/** Outputs: [scores float32 [T,E], topkWeights float32 [T,k], topkIds int32 [T,k]]. */
export const GetMoeScores = 'GetMoeScores';
/** Inputs of the GetMoeScores kernel. */
export interface GetMoeScoresInputs {
  gatingOutput: TensorInfo;          // float32 [T,E]
  eScoreCorrectionBias?: TensorInfo; // float32 [E]
}
/** Attributes of the GetMoeScores kernel. */
export interface GetMoeScoresAttrs extends NamedAttrMap {
  nGroup: number;
  topkGroup: number;
  topK: number;
  routedScalingFactor: number;
  renormalize: boolean;
  /** Renormalised weights are w / (sum + renormalizeEpsilon); the op's own rule is 1e-20. */
  renormalizeEpsilon: number;
}

/**
 * Outputs: [permutedX x.dtype [R,D], tokensPerExpert int32 [E], expertOffsets int32 [E+1], rowMap int32 [T,k]],
 * R = permutedRowCount(T, k, E, alignment).
 */
export const MoePermute = 'MoePermute';
/** Inputs of the MoePermute kernel. */
export interface MoePermuteInputs {
  x: TensorInfo;        // [T,D]
  topkIds: TensorInfo;  // int32 [T,k]
  weights?: TensorInfo; // float32 [T,k]: row rowMap[t,j] holds x[t] * weights[t,j] (routingWeightOn 'input')
}
/** Attributes of the MoePermute kernel. */
export interface MoePermuteAttrs extends NamedAttrMap {
  numExperts: number;
  alignment: number;
  /** Ids in [numExperts, numExperts + zeroExperts) are identity experts: no row, rowMap -1 (section 11.5). */
  zeroExperts: number;
}

/** Output: float32 [R,N]. */
export const BatchedGemm = 'BatchedGemm';
/** Inputs of the BatchedGemm kernel. */
export interface BatchedGemmInputs {
  lhs: TensorInfo;       // float32 [R,K]
  rhs: TensorInfo;       // float32 [E,K,N], or [E,N,K] when transposeRhs
  segments: TensorInfo;  // int32 [E+1] expertOffsets, or [E] tokensPerExpert (see segmentsAreOffsets)
  bias?: TensorInfo;     // float32 [E,N]
}
/** Attributes of the BatchedGemm kernel. */
export interface BatchedGemmAttrs extends NamedAttrMap {
  transposeRhs: boolean;
  /** true: segments is expertOffsets [E+1]; false: tokensPerExpert [E] (segments packed from row 0). */
  segmentsAreOffsets: boolean;
}

/** The activation attrs of the SwiGLU kernels (the layer's option names, executor/layer_schema.ts). */
export type {SwigluActivation} from '../executor/layer_schema.js';
export {SWIGLU_ACTIVATIONS} from '../executor/layer_schema.js';
/** The expert activation's attributes of FusedSwigluScale and BatchedGemmSwiglu (docs/semantics.md 11.2). */
export interface SwigluActivationAttrs extends NamedAttrMap {
  activation: SwigluActivation;
  /** clamped_swiglu only (ignored by 'swiglu'). */
  swigluAlpha: number;
  swigluLimit: number;
}
/** Plain SwiGLU, the activation attributes' default (alpha and limit unused). */
export const PLAIN_SWIGLU: SwigluActivationAttrs = {activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7};

/** Output: float32 [R,I]. */
export const FusedSwigluScale = 'FusedSwigluScale';
/** Inputs of the FusedSwigluScale kernel. */
export interface FusedSwigluScaleInputs {
  x: TensorInfo;       // float32 [R,2I], gate half first
  scale?: TensorInfo;  // float32 [R]
}
/** Attributes of the FusedSwigluScale kernel: the activation. */
export type FusedSwigluScaleAttrs = SwigluActivationAttrs;

/**
 * Output: float32 [R,I]: fusedSwigluScale(batchedGemm(lhs, rhs, segments, bias), scale), the first expert GEMM
 * with SwiGLU x scale as its epilogue (the fused kernel of the pair, as tfjs-core's _FusedMatMul is of matMul +
 * bias + activation). Inputs and attrs are batchedGemm's, plus the row scale.
 */
export const BatchedGemmSwiglu = 'BatchedGemmSwiglu';
export interface BatchedGemmSwigluInputs extends BatchedGemmInputs {
  // rhs: float32 [E,K,2I] (or [E,2I,K] when transposeRhs), gate columns first; bias [E,2I]
  scale?: TensorInfo;  // float32 [R]
}
/** Attributes of the BatchedGemmSwiglu kernel: those of BatchedGemm, and the activation. */
export type BatchedGemmSwigluAttrs = BatchedGemmAttrs & SwigluActivationAttrs;

/** Output: float32 [T,D]. */
export const MoeCombine = 'MoeCombine';
/** Inputs of the MoeCombine kernel. */
export interface MoeCombineInputs {
  y: TensorInfo;             // float32 [R,D]
  rowMap: TensorInfo;        // int32 [T,k]
  topkWeights: TensorInfo;   // float32 [T,k]
  topkIds: TensorInfo;       // int32 [T,k]
  downProjBias?: TensorInfo; // float32 [E,D]
  identityInput?: TensorInfo; // float32 [T,D]: a slot with no row (rowMap -1) adds w[t,j] * identityInput[t]
}
/** Attributes of the MoeCombine kernel. */
export interface MoeCombineAttrs extends NamedAttrMap {
  weightsApplied: boolean;
}

/**
 * Output: float32 [E,K,N] (or [E,N,K] when transposeOut): out[e] = lhs[segment e]^T @ dy[segment e], the weight
 * gradient of batchedGemm. Rows in no segment contribute nothing; an empty segment gives zeros.
 */
export const BatchedGemmWeightGrad = 'BatchedGemmWeightGrad';
/** Inputs of the BatchedGemmWeightGrad kernel. */
export interface BatchedGemmWeightGradInputs {
  lhs: TensorInfo;       // float32 [R,K]
  dy: TensorInfo;        // float32 [R,N]
  segments: TensorInfo;  // int32 [E+1] expertOffsets, or [E] tokensPerExpert (see segmentsAreOffsets)
}
/** Attributes of the BatchedGemmWeightGrad kernel. */
export interface BatchedGemmWeightGradAttrs extends NamedAttrMap {
  numExperts: number;
  /** true: the output is [E,N,K] (the gradient of a transposeRhs batchedGemm). */
  transposeOut: boolean;
  segmentsAreOffsets: boolean;
}

/** The forward kernels: what a backend needs for every MoE op and the FusedMoE forward. */
export const ALL_MOE_KERNELS =
    [MoeTopkSelect, GetMoeScores, MoePermute, BatchedGemm, FusedSwigluScale, MoeCombine, BatchedGemmSwiglu] as const;
/** Kernels only the gradients use; a backend without them runs their composite path. */
export const TRAINING_MOE_KERNELS = [BatchedGemmWeightGrad] as const;
/**
 * The name of any kernel of this package (forward, training, and the kernels over packed expert weights of
 * kernel_names_quantized.ts, which the ops run for a QuantizedExpertWeights rhs).
 */
export type MoeKernelName =
    typeof ALL_MOE_KERNELS[number] | typeof TRAINING_MOE_KERNELS[number] | QuantizedMoeKernelName;

/** The static row count of moePermute's output (docs/semantics.md section 3). */
export function permutedRowCount(numTokens: number, topK: number, numExperts: number, alignment: number): number {
  return alignment === 1 ? numTokens * topK : numTokens * topK + numExperts * (alignment - 1);
}
