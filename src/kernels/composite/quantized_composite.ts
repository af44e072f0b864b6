/**
 * Packed expert weights with stock tfjs ops (docs/formats.md), for backends without our kernels. Codes come out
 * of their words by floorDiv/mod on int32 (exact where int32 is exact: cpu, tensorflow, wasm; not webgl, whose
 * int32 is a float) and become values through table gathers, so no backend's pow or exp rounding enters.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {
  bfloat16BitsToFloat, bitsPerCode, codesPerWord, E2M1_VALUES, e8m0ToFloat, ExpertWeightLayout, halfToFloatTable,
  logicalShape, numGroups,
} from '../expert_weight_formats.js';
import {batchedGemmComposite} from './batched_gemm_composite.js';
import {segmentBoundsComposite} from './segment_bounds_composite.js';

/**
 * Backends whose int32 elementwise ops compute in float32 (words past 2^24 lose bits there, checked on webgpu:
 * about half the decoded weights were wrong). Their packed weights go through their own kernels only.
 */
const INEXACT_INT32_BACKENDS = ['webgpu', 'webgl'];

function checkExactInt32(op: string): void {
  const backend = tf.getBackend();
  if (INEXACT_INT32_BACKENDS.includes(backend)) {
    throw new Error(`${op}: packed expert weights have no composite path on the '${backend}' backend (its int32 ` +
        'ops round through float32); use its kernels (the default kernel path) or a cpu-like backend');
  }
}

/** Dequantized weight elements alive at once in the GEMM (64 MiB of float32), at least one expert. */
const DEQUANT_BUDGET = 1 << 24;
/** The tfjs flag overriding DEQUANT_BUDGET, in elements (0 = the default); specs reach several ranges with it. */
export const MOE_QUANTIZED_COMPOSITE_BUDGET = 'MOE_QUANTIZED_COMPOSITE_BUDGET';

export function registerQuantizedCompositeFlags(): void {
  tf.env().registerFlag(MOE_QUANTIZED_COMPOSITE_BUDGET, () => 0, value => {
    if (!(Number.isSafeInteger(value) && (value as number) >= 0)) {
      throw new Error(`${MOE_QUANTIZED_COMPOSITE_BUDGET} must be an integer >= 0 (0: the default), got ${value}`);
    }
  });
}

function dequantBudget(): number {
  return tf.env().getNumber(MOE_QUANTIZED_COMPOSITE_BUDGET) || DEQUANT_BUDGET;
}

/** Sets MOE_QUANTIZED_COMPOSITE_BUDGET (dequantized elements per expert range); null restores the default. */
export function setQuantizedCompositeBudget(elements: number | null): void {
  if (elements != null && !(Number.isSafeInteger(elements) && elements >= 1)) {
    throw new Error(
        `setQuantizedCompositeBudget: argument 'elements' must be an integer >= 1 or null, got ${elements}`);
  }
  tf.env().set(MOE_QUANTIZED_COMPOSITE_BUDGET, elements ?? 0);
}

let bfloat16Table: Float32Array | null = null;
function bfloat16ToFloatTable(): Float32Array {
  if (bfloat16Table == null) bfloat16Table = Float32Array.from({length: 65536}, (_, b) => bfloat16BitsToFloat(b));
  return bfloat16Table;
}

/**
 * The `bits`-wide fields of int32 words t, the lowest first, laid out along `axis` (whose length L becomes
 * L * 32/bits), then cut to `length`.
 */
function unpackFields(t: Tensor, bits: number, axis: number, length: number): Tensor {
  const per = 32 / bits;
  const fields: Tensor[] = [];
  for (let j = 0; j < per; j++) {
    const shifted = j === 0 ? t : tf.floorDiv(t, tf.scalar(2 ** (bits * j), 'int32'));
    fields.push(tf.mod(shifted, tf.scalar(2 ** bits, 'int32')));
  }
  const stacked = per === 1 ? fields[0] : tf.stack(fields, axis + 1);
  const shape = t.shape.slice();
  shape[axis] *= per;
  const flat = tf.reshape(stacked, shape);
  if (shape[axis] === length) return flat;
  const size = shape.slice();
  size[axis] = length;
  return tf.slice(flat, shape.map(() => 0), size);
}

function lookup(table: ArrayLike<number>, codes: Tensor): Tensor {
  return tf.gather(tf.tensor1d(Float32Array.from(table)), codes);
}

/** Per-group tensor [E,G,N] / [E,N,G] repeated along K to the weights' [E,K,N] / [E,N,K]. */
function expandGroups(l: ExpertWeightLayout, perGroup: Tensor): Tensor {
  const groupOfK = Int32Array.from({length: l.depth}, (_, k) => Math.floor(k / l.groupSize));
  return tf.gather(perGroup, tf.tensor1d(groupOfK, 'int32'), l.transposed ? 2 : 1);
}

/** float32 [E,K,N] / [E,N,K]: the weights of docs/formats.md from their packed tensors, with stock ops. */
export function dequantizeComposite(
    l: ExpertWeightLayout, values: Tensor, scales: Tensor | null, zeroPoints: Tensor | null): Tensor {
  if (l.format !== 'float32') checkExactInt32('dequantizeExpertWeights');
  return tf.tidy(() => {
    if (l.format === 'float32') return tf.clone(values);
    if (l.numExperts * l.depth * l.width === 0) return tf.zeros(logicalShape(l));
    const kAxis = l.transposed ? 2 : 1;
    const codes = unpackFields(values, bitsPerCode(l.format), kAxis, l.depth);
    switch (l.format) {
      case 'float16': return lookup(halfToFloatTable(), codes);
      case 'bfloat16': return lookup(bfloat16ToFloatTable(), codes);
      case 'int8': {
        const signed = tf.sub(codes, tf.mul(tf.scalar(256, 'int32'), tf.cast(tf.greaterEqual(codes, 128), 'int32')));
        return tf.mul(expandGroups(l, scales!), tf.cast(signed, 'float32'));
      }
      case 'int4': {
        const zero = zeroPoints == null ? tf.scalar(8) : expandGroups(l, zeroPoints);
        return tf.mul(expandGroups(l, scales!), tf.sub(tf.cast(codes, 'float32'), zero));
      }
      case 'mxfp4': {
        // The E8M0 bytes run along the scales' last axis: N (untransposed) or G (transposed).
        const bytes = unpackFields(scales!, 8, 2, l.transposed ? numGroups(l) : l.width);
        const scale = lookup(Array.from({length: 256}, (_, b) => e8m0ToFloat(b)), bytes);
        return tf.mul(lookup(E2M1_VALUES, codes), expandGroups(l, scale));
      }
    }
  });
}

/** Experts [e0, e1) of packed tensors (their leading axis) with the matching layout. */
function expertRange(l: ExpertWeightLayout, t: Tensor | null, e0: number, e1: number): Tensor | null {
  return t == null ? null : tf.slice(t, [e0, 0, 0], [e1 - e0, -1, -1]);
}

/**
 * batchedGemm over packed weights: experts in ranges of at most DEQUANT_BUDGET dequantized elements, each range
 * dequantized with stock ops and multiplied by the float composite GEMM on its own segments. Rows belong to one
 * expert and a range's product is zero outside its segments, so the range products add up exactly.
 */
export function batchedGemmQuantizedComposite(
    lhs: Tensor2D, l: ExpertWeightLayout, values: Tensor, scales: Tensor | null, zeroPoints: Tensor | null,
    segments: Tensor1D, bias: Tensor2D | null, segmentsAreOffsets: boolean): Tensor2D {
  const numRows = lhs.shape[0];
  if (l.format !== 'float32') checkExactInt32('batchedGemm');
  return tf.tidy(() => {
    if (l.numExperts === 0) return tf.zeros([numRows, l.width]) as Tensor2D;
    const perRange = Math.max(1, Math.floor(dequantBudget() / Math.max(1, l.depth * l.width)));
    // Bounds first (section 4's rule for invalid segments): slices of valid bounds stay valid per range.
    const offsets = segmentBoundsComposite(segments, segmentsAreOffsets, numRows);
    const attrs = {transposeRhs: l.transposed, segmentsAreOffsets: true};
    let out: Tensor2D | null = null;
    for (let e0 = 0; e0 < l.numExperts; e0 += perRange) {
      const e1 = Math.min(l.numExperts, e0 + perRange);
      // Per-range tidy: one range's float32 weights alive at a time.
      const part = tf.tidy(() => {
        const sub: ExpertWeightLayout = {...l, numExperts: e1 - e0};
        const w = dequantizeComposite(sub, expertRange(l, values, e0, e1)!, expertRange(l, scales, e0, e1),
                                      expertRange(l, zeroPoints, e0, e1)) as Tensor3D;
        const biasPart = bias == null ? null : tf.slice(bias, [e0, 0], [e1 - e0, -1]) as Tensor2D;
        return batchedGemmComposite(lhs, w, tf.slice(offsets, e0, e1 - e0 + 1), biasPart, attrs);
      });
      if (out == null) {
        out = part;
      } else {
        const sum: Tensor2D = tf.add(out, part);
        out.dispose();
        part.dispose();
        out = sum;
      }
    }
    return out!;
  });
}
