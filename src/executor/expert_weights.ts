/**
 * The expert weight formats and the QuantizedExpertWeights record (docs/formats.md), below the layer so that the
 * layer's schema, the ops, the kernels and the executors share one definition.
 */
import type {Tensor} from '@tensorflow/tfjs-core';

/** Every storage format of the routed experts' weights (docs/formats.md). */
export const EXPERT_WEIGHT_FORMATS = ['float32', 'float16', 'bfloat16', 'int8', 'int4', 'mxfp4'] as const;
/** A storage format of the routed experts' weights: float32, half (float16, bfloat16) or low-bit (docs/formats.md). */
export type ExpertWeightFormat = typeof EXPERT_WEIGHT_FORMATS[number];

/** The group length along K of every mxfp4 block (OCP Microscaling). */
export const MXFP4_BLOCK = 32;
/** The group sizes int4 accepts. */
export const INT4_GROUP_SIZES = [32, 64, 128] as const;

/**
 * The group size a format uses along K for a requested one (null: the format's default: int4 32, int8 K = one
 * scale per column, mxfp4 32; 0 for the formats without scales).
 */
export function defaultGroupSize(format: ExpertWeightFormat, depth: number, requested: number | null): number {
  switch (format) {
    case 'int4': return requested ?? 32;
    case 'int8': return requested ?? Math.max(depth, 1);
    case 'mxfp4': return requested ?? MXFP4_BLOCK;
    default: return 0;
  }
}

/** Why (format, groupSize, zeroPoint) is not a valid combination, or null when it is (groupSize null: default). */
export function formatOptionsProblem(format: ExpertWeightFormat, groupSize: number | null, zeroPoint: boolean):
    {option: 'groupSize' | 'zeroPoint', expected: string} | null {
  if (zeroPoint && format !== 'int4') return {option: 'zeroPoint', expected: `false for format '${format}' (int4 only)`};
  if (groupSize == null) return null;
  if (format === 'int4' && !(INT4_GROUP_SIZES as readonly number[]).includes(groupSize)) {
    return {option: 'groupSize', expected: `one of ${INT4_GROUP_SIZES.join(', ')} for int4`};
  }
  if (format === 'mxfp4' && groupSize !== MXFP4_BLOCK) {
    return {option: 'groupSize', expected: `${MXFP4_BLOCK} for mxfp4 (OCP blocks)`};
  }
  if (!hasScales(format)) return {option: 'groupSize', expected: `absent for format '${format}' (it has no scales)`};
  return null;
}

export function bitsPerCode(format: ExpertWeightFormat): number {
  switch (format) {
    case 'float32': return 32;
    case 'float16': case 'bfloat16': return 16;
    case 'int8': return 8;
    case 'int4': case 'mxfp4': return 4;
  }
}

/** Codes per int32 word (1 for float32, whose values tensor is the float tensor itself). */
export function codesPerWord(format: ExpertWeightFormat): number {
  return 32 / bitsPerCode(format);
}

export function hasScales(format: ExpertWeightFormat): boolean {
  return format === 'int8' || format === 'int4' || format === 'mxfp4';
}

/** Everything that fixes where a code, scale or zero point lives. */
export interface ExpertWeightLayout {
  format: ExpertWeightFormat;
  numExperts: number;  // E
  depth: number;       // K (the reduction axis)
  width: number;       // N (output columns)
  transposed: boolean;
  /** Along K; 0 for formats without scales. */
  groupSize: number;
  zeroPoint: boolean;
}

export function numGroups(l: ExpertWeightLayout): number {
  return l.groupSize === 0 ? 0 : Math.ceil(l.depth / l.groupSize);
}

/** Words per column along K (K itself for float32). */
export function wordsPerColumn(l: ExpertWeightLayout): number {
  return Math.ceil(l.depth / codesPerWord(l.format));
}

/** Shape of the `values` tensor: int32 packed codes, or the float32 tensor itself for 'float32'. */
export function valuesShape(l: ExpertWeightLayout): [number, number, number] {
  const kw = wordsPerColumn(l);
  return l.transposed ? [l.numExperts, l.width, kw] : [l.numExperts, kw, l.width];
}

/**
 * Shape of `scales` (and `zeroPoints`): float32 [E,G,N] ([E,N,G] transposed) for int8/int4; for mxfp4 the E8M0
 * bytes of that [E,G,N] / [E,N,G] array, four per int32 word along its last axis.
 */
export function scalesShape(l: ExpertWeightLayout): [number, number, number] | null {
  if (!hasScales(l.format)) return null;
  const g = numGroups(l);
  const [rows, cols] = l.transposed ? [l.width, g] : [g, l.width];
  return [l.numExperts, rows, l.format === 'mxfp4' ? Math.ceil(cols / 4) : cols];
}

/** The float tensor shape the weights stand for: [E,K,N], or [E,N,K] when transposed. */
export function logicalShape(l: ExpertWeightLayout): [number, number, number] {
  return l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width];
}

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

/** The packed variables of one expert weight in a layer: `<name>_values`, `_scales`, `_zero_points`. */
export interface PackedWeightSpec {
  part: 'values' | 'scales' | 'zeroPoints';
  suffix: '_values' | '_scales' | '_zero_points';
  shape: [number, number, number];
  dtype: 'float32' | 'int32';
}

/** The tensors a layout is stored in, in the order a layer creates them. */
export function packedWeightSpecs(l: ExpertWeightLayout): PackedWeightSpec[] {
  const specs: PackedWeightSpec[] = [{part: 'values', suffix: '_values', shape: valuesShape(l),
                                      dtype: l.format === 'float32' ? 'float32' : 'int32'}];
  const s = scalesShape(l);
  if (s != null) specs.push({part: 'scales', suffix: '_scales', shape: s, dtype: l.format === 'mxfp4' ? 'int32' : 'float32'});
  if (l.zeroPoint) specs.push({part: 'zeroPoints', suffix: '_zero_points', shape: s!, dtype: 'float32'});
  return specs;
}
