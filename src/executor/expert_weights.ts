/**
 * The expert weight formats and the QuantizedExpertWeights record (docs/formats.md), below the layer so that the
 * layer's schema, the ops, the kernels and the executors share one definition.
 */
import type {Tensor} from '@tensorflow/tfjs-core';

export const EXPERT_WEIGHT_FORMATS = ['float32', 'float16', 'bfloat16', 'int8', 'int4', 'mxfp4'] as const;
export type ExpertWeightFormat = typeof EXPERT_WEIGHT_FORMATS[number];

/**
 * Expert weights in one of the formats of docs/formats.md. `shape` is the float tensor they stand for: [E,K,N],
 * or [E,N,K] when `transposed` (then batchedGemm needs transposeRhs). Dispose with tf.dispose(q).
 */
export interface QuantizedExpertWeights {
  format: ExpertWeightFormat;
  shape: [number, number, number];
  transposed: boolean;
  /** Codes per scale along K (int8 per column: K); 0 for float32, float16, bfloat16. */
  groupSize: number;
  /** int4 only: a zero point per group (else the implicit 8). */
  zeroPoint: boolean;
  /** int32 packed codes (see valuesShape); for 'float32' the float32 weights themselves. */
  values: Tensor;
  /** int8/int4: float32 [E,G,N] ([E,N,G] transposed); mxfp4: int32, E8M0 bytes four per word. */
  scales?: Tensor;
  /** int4 with zeroPoint: float32 integers in [0, 16], scales' shape. */
  zeroPoints?: Tensor;
}

/** Whether an expert weight value is packed (a QuantizedExpertWeights) rather than a float32 tensor. */
export function isQuantizedExpertWeights(w: unknown): w is QuantizedExpertWeights {
  return w != null && typeof w === 'object' && !Array.isArray(w) && 'values' in w && 'format' in w;
}
