/**
 * Half and low-bit expert weights (docs/formats.md): quantizeExpertWeights packs float32 experts into a format,
 * dequantizeExpertWeights gives back the float32 weights the kernels compute with, exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor3D} from '@tensorflow/tfjs-core';

import {defaultGroupSize, formatOptionsProblem} from '../executor/expert_weights.js';
import type {QuantizedExpertWeights} from '../executor/expert_weights.js';
import {dequantizeComposite} from '../kernels/composite/quantized_composite.js';
import {quantizeExpertWeightsImpl} from '../kernels/cpu/quantize_expert_weights_impl.js';
import {
  EXPERT_WEIGHT_FORMATS, ExpertWeightData, ExpertWeightFormat, ExpertWeightLayout, hasScales, scalesShape, valuesShape,
} from '../kernels/expert_weight_formats.js';
import {DequantizeExpertWeights, ExpertWeightInputs, ExpertWeightLayoutAttrs} from '../kernels/kernel_names_quantized.js';
import {runMoeKernel} from './dispatch.js';
import {argError, checkBoolean, checkInt, checkOptions, checkTensor} from './validate.js';

export type {ExpertWeightFormat} from '../kernels/expert_weight_formats.js';

export type {QuantizedExpertWeights} from '../executor/expert_weights.js';

/** Options of {@link quantizeExpertWeights}. */
export interface QuantizeExpertWeightsOptions {
  /** Along K. int4: 32 (default), 64 or 128; int8: K (default: one scale per column) or any size >= 1; mxfp4: 32. */
  groupSize?: number;
  /** int4 only: asymmetric codes with a zero point per group (default false: symmetric, zero 8). */
  zeroPoint?: boolean;
  /** w is [E,N,K] (torch Linear layout, what batchedGemm's transposeRhs reads) instead of [E,K,N]. */
  transposed?: boolean;
}

const QUANTIZE = 'quantizeExpertWeights';

/** The layout a (format, options) pair gives for float weights of `shape`; throws naming the bad argument. */
export function expertWeightLayout(
    op: string, shape: readonly number[], format: unknown, options: QuantizeExpertWeightsOptions = {},
    prefix = {format: 'format', options: 'options'}): ExpertWeightLayout {
  const f = checkFormat(op, prefix.format, format);
  const opts = checkOptions(op, prefix.options, options, ['groupSize', 'zeroPoint', 'transposed']);
  const o = (name: string) => `${prefix.options}.${name}`;
  const transposed = opts.transposed == null ? false : checkBoolean(op, o('transposed'), opts.transposed);
  const zeroPoint = opts.zeroPoint == null ? false : checkBoolean(op, o('zeroPoint'), opts.zeroPoint);
  const [numExperts, rows, cols] = shape;
  const [depth, width] = transposed ? [cols, rows] : [rows, cols];
  const requested = opts.groupSize == null ? null : checkInt(op, o('groupSize'), opts.groupSize, 1);
  const problem = formatOptionsProblem(f, requested, zeroPoint);
  if (problem != null) {
    throw argError(op, o(problem.option), problem.expected, String(problem.option === 'zeroPoint' ? zeroPoint : requested));
  }
  const groupSize = defaultGroupSize(f, depth, requested);
  return {format: f, numExperts, depth, width, transposed, groupSize, zeroPoint};
}

function checkFormat(op: string, arg: string, format: unknown): ExpertWeightFormat {
  if (typeof format !== 'string' || !(EXPERT_WEIGHT_FORMATS as readonly string[]).includes(format)) {
    throw argError(op, arg, `one of ${EXPERT_WEIGHT_FORMATS.map(f => `'${f}'`).join(', ')}`,
                   JSON.stringify(format) ?? String(format));
  }
  return format as ExpertWeightFormat;
}

function wrap(l: ExpertWeightLayout, d: ExpertWeightData): QuantizedExpertWeights {
  const shape: [number, number, number] =
      l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width];
  const q: QuantizedExpertWeights = {
    format: l.format, shape, transposed: l.transposed, groupSize: l.groupSize, zeroPoint: l.zeroPoint,
    values: tf.tensor(d.values, valuesShape(l), l.format === 'float32' ? 'float32' : 'int32'),
  };
  if (d.scales != null) q.scales = tf.tensor(d.scales, scalesShape(l)!, l.format === 'mxfp4' ? 'int32' : 'float32');
  if (d.zeroPoints != null) q.zeroPoints = tf.tensor(d.zeroPoints, scalesShape(l)!, 'float32');
  return q;
}

/** Host-side quantizer (loaders and tools): float32 data of `shape` -> QuantizedExpertWeights. */
export function quantizeExpertWeightsFromArray(
    data: Float32Array, shape: readonly number[], format: ExpertWeightFormat,
    options: QuantizeExpertWeightsOptions = {}): QuantizedExpertWeights {
  if (!(data instanceof Float32Array)) throw argError(QUANTIZE, 'data', 'a Float32Array', typeof data);
  if (!Array.isArray(shape) || shape.length !== 3 || shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
    throw argError(QUANTIZE, 'shape', 'three non-negative integers [E,K,N]', JSON.stringify(shape));
  }
  if (data.length !== shape[0] * shape[1] * shape[2]) {
    throw argError(QUANTIZE, 'data', `${shape[0] * shape[1] * shape[2]} values for shape [${shape.join(',')}]`,
                   `${data.length} values`);
  }
  const l = expertWeightLayout(QUANTIZE, shape, format, options);
  return wrap(l, quantizeExpertWeightsImpl(QUANTIZE, data, l));
}

function checkWeights(w: unknown): Tensor3D {
  const t = checkTensor(QUANTIZE, 'w', w, 3, 'float32', '[E,K,N] (or [E,N,K] with transposed)') as Tensor3D;
  if (tf.getBackend() === 'webgpu') {
    // A synchronous read of a webgpu tensor throws in Node and can return zeros in browsers (docs/formats.md).
    throw argError(QUANTIZE, 'w', 'a tensor readable synchronously (not on webgpu: use quantizeExpertWeightsAsync)',
                   'a tensor on the webgpu backend');
  }
  return t;
}

/**
 * Quantizes float32 expert weights w [E,K,N] (or [E,N,K] with options.transposed) into `format` on the host
 * (docs/formats.md gives the rule). The result's tensors are new; w is left alone.
 */
export function quantizeExpertWeights(
    w: Tensor3D, format: ExpertWeightFormat, options: QuantizeExpertWeightsOptions = {}): QuantizedExpertWeights {
  const t = checkWeights(w);
  const l = expertWeightLayout(QUANTIZE, t.shape, format, options);
  return wrap(l, quantizeExpertWeightsImpl(QUANTIZE, t.dataSync() as Float32Array, l));
}

/** quantizeExpertWeights for tensors on any backend (reads w asynchronously). */
export async function quantizeExpertWeightsAsync(
    w: Tensor3D, format: ExpertWeightFormat, options: QuantizeExpertWeightsOptions = {}):
    Promise<QuantizedExpertWeights> {
  const t = checkTensor(QUANTIZE, 'w', w, 3, 'float32', '[E,K,N] (or [E,N,K] with transposed)') as Tensor3D;
  const l = expertWeightLayout(QUANTIZE, t.shape, format, options);
  return wrap(l, quantizeExpertWeightsImpl(QUANTIZE, await t.data() as Float32Array, l));
}

function describeQ(value: unknown): string {
  if (value == null) return String(value);
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor of shape [${value.shape.join(',')}]`;
  return typeof value === 'object' ? `an object with keys {${Object.keys(value).join(', ')}}` : typeof value;
}

function checkPart(op: string, arg: string, t: unknown, dtype: 'int32' | 'float32', shape: number[]): Tensor {
  const dims = `[${shape.join(',')}]`;
  const got = checkTensor(op, arg, t, 3, dtype, dims);
  if (got.shape.some((d, i) => d !== shape[i])) throw argError(op, arg, `of shape ${dims}`, `[${got.shape.join(',')}]`);
  return got;
}

/**
 * Validates a QuantizedExpertWeights passed as argument `arg` of `op` (every field and tensor consistent with
 * its format) and returns its layout and tensors for runKernel.
 */
export function checkQuantizedExpertWeights(op: string, arg: string, q: unknown):
    {layout: ExpertWeightLayout, inputs: Record<keyof ExpertWeightInputs, Tensor | undefined>} {
  if (q == null || typeof q !== 'object' || q instanceof tf.Tensor || Array.isArray(q)) {
    throw argError(op, arg, 'a QuantizedExpertWeights {format, shape, transposed, groupSize, zeroPoint, values, ...}',
                   describeQ(q));
  }
  const o = q as Record<string, unknown>;
  const shape = o.shape;
  if (!Array.isArray(shape) || shape.length !== 3 || shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
    throw argError(op, `${arg}.shape`, 'three non-negative integers', JSON.stringify(shape) ?? String(shape));
  }
  const transposed = checkBoolean(op, `${arg}.transposed`, o.transposed);
  const zeroPoint = checkBoolean(op, `${arg}.zeroPoint`, o.zeroPoint);
  const groupSize = checkInt(op, `${arg}.groupSize`, o.groupSize, 0);
  const format = checkFormat(op, `${arg}.format`, o.format);
  const opts: QuantizeExpertWeightsOptions = {transposed, zeroPoint};
  if (hasScales(format)) opts.groupSize = groupSize;
  else if (groupSize !== 0) throw argError(op, `${arg}.groupSize`, `0 for format '${format}'`, String(groupSize));
  const layout = expertWeightLayout(op, shape, format, opts, {format: `${arg}.format`, options: arg});
  const isFloat = layout.format === 'float32';
  const values = checkPart(op, `${arg}.values`, o.values, isFloat ? 'float32' : 'int32', valuesShape(layout));
  const sShape = scalesShape(layout);
  let scales: Tensor | undefined, zeroPoints: Tensor | undefined;
  if (sShape == null) {
    if (o.scales != null) {
      throw argError(op, `${arg}.scales`, `absent for format '${layout.format}'`, describeQ(o.scales));
    }
  } else {
    scales = checkPart(op, `${arg}.scales`, o.scales, layout.format === 'mxfp4' ? 'int32' : 'float32', sShape);
  }
  if (layout.zeroPoint) {
    zeroPoints = checkPart(op, `${arg}.zeroPoints`, o.zeroPoints, 'float32', sShape!);
  } else if (o.zeroPoints != null) {
    throw argError(op, `${arg}.zeroPoints`, 'absent unless zeroPoint is true', describeQ(o.zeroPoints));
  }
  return {layout, inputs: {values, scales, zeroPoints}};
}

/** Layout as kernel attrs. */
export function layoutAttrs(l: ExpertWeightLayout): ExpertWeightLayoutAttrs {
  return {...l};
}

/** Only the tensors present (runKernel inputs omit absent ones). */
export function presentInputs(inputs: Record<string, Tensor | undefined>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) if (t != null) out[name] = t;
  return out;
}

/**
 * float32 weights [E,K,N] (or [E,N,K] when q.transposed) that q stands for, exactly as docs/formats.md defines
 * them (the weights every batchedGemm over q computes with). Runs on the active backend.
 */
export function dequantizeExpertWeights(q: QuantizedExpertWeights): Tensor3D {
  const op = 'dequantizeExpertWeights';
  const {layout, inputs} = checkQuantizedExpertWeights(op, 'q', q);
  if (layout.format === 'float32') return tf.clone(inputs.values!) as Tensor3D;
  return runMoeKernel(DequantizeExpertWeights, presentInputs(inputs), layoutAttrs(layout),
                      () => dequantizeComposite(layout, inputs.values!, inputs.scales ?? null,
                                                inputs.zeroPoints ?? null) as Tensor3D);
}

/** Bytes the packed tensors of q occupy (values + scales + zero points, 4 per int32/float32 element). */
export function quantizedExpertWeightBytes(q: QuantizedExpertWeights): number {
  return [q.values, q.scales, q.zeroPoints].reduce((sum, t) => sum + (t == null ? 0 : t.size * 4), 0);
}

/** The same bytes from a shape alone (for planning, e.g. the closing note's table). */
export function expertWeightBytes(
    shape: readonly number[], format: ExpertWeightFormat, options: QuantizeExpertWeightsOptions = {}): number {
  const l = expertWeightLayout('expertWeightBytes', shape, format, options);
  const count = (s: number[] | null) => s == null ? 0 : s.reduce((a, b) => a * b, 1);
  return 4 * (count(valuesShape(l)) + count(scalesShape(l)) * (l.zeroPoint ? 2 : 1));
}

/** Fills packed expert weights one expert at a time (see createExpertWeightsBuilder). */
export interface ExpertWeightsBuilder {
  /** Quantizes expert e's float32 weights ([K,N], or [N,K] when transposed, row-major) into place. */
  setExpert(e: number, w: Float32Array): void;
  /**
   * float16 / bfloat16 builders only: expert e's 16-bit patterns of the format (as a checkpoint stores them) copied
   * into place, no float32 and no rounding. `order` 'kn': [K,N] row-major; 'nk': [N,K] (torch Linear rows).
   */
  setExpertHalves(e: number, bits: Uint16Array, order: 'kn' | 'nk'): void;
  /** The tensors, once every expert is set (then the builder is spent). */
  build(): QuantizedExpertWeights;
}

/**
 * Packed weights of `shape` ([E,K,N] or [E,N,K] with options.transposed) built expert by expert, so that a loader
 * holds the packed layer plus one expert's float32 at a time, never the layer's float32. The result equals
 * quantizeExpertWeightsFromArray on the whole array, bit for bit (every format quantizes experts independently).
 */
export function createExpertWeightsBuilder(
    shape: readonly number[], format: ExpertWeightFormat, options: QuantizeExpertWeightsOptions = {}):
    ExpertWeightsBuilder {
  const op = 'createExpertWeightsBuilder';
  if (!Array.isArray(shape) || shape.length !== 3 || shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
    throw argError(op, 'shape', 'three non-negative integers [E,K,N]', JSON.stringify(shape));
  }
  const l = expertWeightLayout(op, shape, format, options);
  const one: ExpertWeightLayout = {...l, numExperts: 1};
  const size = (s: number[] | null) => (s == null ? 0 : s.reduce((a, b) => a * b, 1));
  const perExpert = l.depth * l.width;
  const values = l.format === 'float32' ? new Float32Array(size(valuesShape(l))) : new Int32Array(size(valuesShape(l)));
  const sSize = size(scalesShape(l));
  const scales = !hasScales(l.format) ? null : l.format === 'mxfp4' ? new Int32Array(sSize) : new Float32Array(sSize);
  const zeroPoints = l.zeroPoint ? new Float32Array(sSize) : null;
  const filled = new Uint8Array(l.numExperts);
  let built = false;
  return {
    setExpert(e: number, w: Float32Array): void {
      if (built) throw new Error(`${op}: setExpert after build()`);
      checkInt(op, 'e', e, 0, l.numExperts - 1);
      if (!(w instanceof Float32Array) || w.length !== perExpert) {
        throw argError(op, 'w', `a Float32Array of K*N = ${perExpert} values`,
                       w instanceof Float32Array ? `${w.length} values` : typeof w);
      }
      let d: ExpertWeightData;
      try {
        d = quantizeExpertWeightsImpl(op, w, one);
      } catch (err) {
        throw new Error(`${(err as Error).message} (index within expert ${e})`);
      }
      values.set(d.values, e * d.values.length);
      if (scales != null) scales.set(d.scales!, e * d.scales!.length);
      if (zeroPoints != null) zeroPoints.set(d.zeroPoints!, e * d.zeroPoints!.length);
      filled[e] = 1;
    },
    setExpertHalves(e: number, bits: Uint16Array, order: 'kn' | 'nk'): void {
      if (built) throw new Error(`${op}: setExpertHalves after build()`);
      if (l.format !== 'float16' && l.format !== 'bfloat16') {
        throw new Error(`${op}: setExpertHalves needs a float16 / bfloat16 builder, this one is '${l.format}'`);
      }
      checkInt(op, 'e', e, 0, l.numExperts - 1);
      if (order !== 'kn' && order !== 'nk') throw argError(op, 'order', "'kn' or 'nk'", String(order));
      if (!(bits instanceof Uint16Array) || bits.length !== perExpert) {
        throw argError(op, 'bits', `a Uint16Array of K*N = ${perExpert} values`,
                       bits instanceof Uint16Array ? `${bits.length} values` : typeof bits);
      }
      packHalves(l, e, bits, order, values as Int32Array);
      filled[e] = 1;
    },
    build(): QuantizedExpertWeights {
      if (built) throw new Error(`${op}: build() called twice`);
      const missing = filled.findIndex(f => f === 0);
      if (missing >= 0) throw new Error(`${op}: expert ${missing} was never set (setExpert(${missing}, w))`);
      built = true;
      return wrap(l, {values, scales, zeroPoints});
    },
  };
}

/**
 * Expert e's 16-bit codes ([K,N] or [N,K] row-major) into the words of layout l (docs/formats.md 2.1): code k of
 * column n in word kw = floor(k/2), low half for even k; an odd K leaves the last word's high half 0.
 */
function packHalves(l: ExpertWeightLayout, e: number, bits: Uint16Array, order: 'kn' | 'nk', values: Int32Array): void {
  const {depth: K, width: N} = l, Kw = Math.ceil(K / 2);
  if (order === 'nk' && K % 2 === 0 && bits.byteOffset % 4 === 0 && LITTLE_ENDIAN_HOST) {
    // Each [N,K] row's pairs of halves already are its words: [N,Kw] words, moved (transposed for [E,K,N]).
    const words = new Int32Array(bits.buffer, bits.byteOffset, N * Kw);
    if (l.transposed) {
      values.set(words, e * N * Kw);
    } else {
      transposeWords(words, N, Kw, values, e * Kw * N);
    }
    return;
  }
  const at = order === 'kn' ? (k: number, n: number) => bits[k * N + n] : (k: number, n: number) => bits[n * K + k];
  for (let n = 0; n < N; n++) {
    for (let kw = 0; kw < Kw; kw++) {
      const k = 2 * kw;
      const word = at(k, n) | (k + 1 < K ? at(k + 1, n) << 16 : 0);
      values[l.transposed ? (e * N + n) * Kw + kw : (e * Kw + kw) * N + n] = word;
    }
  }
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** out[offset + c * rows + r] = src[r * cols + c], in tiles so that both sides stay in cache. */
function transposeWords(src: Int32Array, rows: number, cols: number, out: Int32Array, offset: number): void {
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let c = c0; c < c1; c++) {
        const o = offset + c * rows;
        for (let r = r0; r < r1; r++) out[o + r] = src[r * cols + c];
      }
    }
  }
}
