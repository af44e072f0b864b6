/**
 * Checkpoint tensors -> QuantizedExpertWeights without a float32 detour (docs/formats.md, "Checkpoints"):
 * gpt-oss MXFP4 `*_blocks` / `*_scales`, raw F16 / BF16 data as a safetensors reader keeping the dtype returns it,
 * GPTQ int4 (qweight / qzeros / scales, no act-order). Every mapping is a bit-exact re-layout of the codes; nothing
 * is requantized. Host arrays in, tensors on the active backend out.
 */
import * as tf from '@tensorflow/tfjs-core';

import {
  codeAddress, ExpertWeightData, ExpertWeightLayout, halfBitsToFloat, INT4_GROUP_SIZES, MXFP4_BLOCK, numGroups, scaleAddress,
  scalesShape, valuesShape,
} from '../kernels/expert_weight_formats.js';
import {checkQuantizedExpertWeights, QuantizedExpertWeights} from '../ops/quantize_expert_weights.js';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(op: string, arg: string, expected: string, got: string): never {
  throw new Error(`${op}: argument '${arg}' must be ${expected}, got ${got}`);
}

function checkShape(op: string, arg: string, shape: unknown, rank: number): number[] {
  if (!Array.isArray(shape) || shape.length !== rank || shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
    fail(op, arg, `${rank} non-negative integers`, JSON.stringify(shape) ?? String(shape));
  }
  return shape as number[];
}

/** Bytes of a U8 tensor as a reader returns it: raw Uint8Array, or int32 values in [0, 255] (one per element). */
function checkBytes(op: string, arg: string, data: unknown, count: number): ArrayLike<number> {
  if (!(data instanceof Uint8Array) && !(data instanceof Int32Array)) {
    fail(op, arg, 'a Uint8Array (raw U8) or an Int32Array of byte values', Object.prototype.toString.call(data));
  }
  const bytes = data as Uint8Array | Int32Array;
  if (bytes.length !== count) fail(op, arg, `${count} bytes for its shape`, `${bytes.length}`);
  if (bytes instanceof Int32Array) {
    const bad = bytes.findIndex(b => b < 0 || b > 255);
    if (bad >= 0) fail(op, arg, 'byte values in [0, 255]', `${bytes[bad]} at flat index ${bad}`);
  }
  return bytes;
}

function wrap(l: ExpertWeightLayout, values: Int32Array, scales: Float32Array | Int32Array | null,
              zeroPoints: Float32Array | null): QuantizedExpertWeights {
  const q: QuantizedExpertWeights = {
    format: l.format, transposed: l.transposed, groupSize: l.groupSize, zeroPoint: l.zeroPoint,
    shape: l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width],
    values: tf.tensor(values, valuesShape(l), 'int32'),
  };
  if (scales != null) q.scales = tf.tensor(scales, scalesShape(l)!, l.format === 'mxfp4' ? 'int32' : 'float32');
  if (zeroPoints != null) q.zeroPoints = tf.tensor(zeroPoints, scalesShape(l)!, 'float32');
  return q;
}

/** Options of {@link fromGptOssMxfp4}. */
export interface GptOssMxfp4Options {
  /**
   * Result layout: true (default) keeps the checkpoint's [E,N,K] (the words are the blocks' bytes); false gives
   * the layer's [E,K,N] (the same words, transposed: codes are packed along K in both).
   */
  transposed?: boolean;
  /**
   * gpt-oss's gate_up rows: row 2i is gate column i, row 2i+1 up column i; true moves them to i and N/2 + i (gate
   * columns first, the layer's order). Whole rows of codes and scales move, nothing is requantized.
   */
  interleaved?: boolean;
}

/**
 * gpt-oss experts as stored: blocks U8 [E, N, G, 16] (32 E2M1 codes per block, element 2i in the low nibble of
 * byte i) and scales U8 [E, N, G] (E8M0), N the output rows, K = 32 G. The result is 'mxfp4', by default in the
 * [E,N,K] (transposed) layout, whose words are the blocks' bytes read as little-endian int32: no code moves.
 */
export function fromGptOssMxfp4(
    blocks: {data: Uint8Array | Int32Array, shape: number[]}, scales: {data: Uint8Array | Int32Array, shape: number[]},
    options: GptOssMxfp4Options = {}): QuantizedExpertWeights {
  const {layout, data} = gptOssMxfp4Data(blocks, scales, options);
  return wrap(layout, data.values as Int32Array, data.scales, null);
}

/** fromGptOssMxfp4's layout and host arrays (loaders decode or wrap them). */
export function gptOssMxfp4Data(
    blocks: {data: Uint8Array | Int32Array, shape: number[]}, scales: {data: Uint8Array | Int32Array, shape: number[]},
    options: GptOssMxfp4Options = {}): {layout: ExpertWeightLayout, data: ExpertWeightData} {
  const op = 'fromGptOssMxfp4';
  if (options == null || typeof options !== 'object') fail(op, 'options', 'an options object', String(options));
  const transposed = options.transposed ?? true, interleaved = options.interleaved ?? false;
  if (typeof transposed !== 'boolean') fail(op, 'options.transposed', 'a boolean', String(transposed));
  if (typeof interleaved !== 'boolean') fail(op, 'options.interleaved', 'a boolean', String(interleaved));
  const [numExperts, width, groups, blockBytes] = checkShape(op, 'blocks.shape', blocks?.shape, 4);
  if (blockBytes !== MXFP4_BLOCK / 2) fail(op, 'blocks.shape', `[E, N, G, ${MXFP4_BLOCK / 2}]`, `[${blocks.shape}]`);
  if (interleaved && width % 2 !== 0) fail(op, 'blocks.shape', 'an even N for interleaved gate/up rows', `[${blocks.shape}]`);
  const sShape = checkShape(op, 'scales.shape', scales?.shape, 3);
  if (sShape[0] !== numExperts || sShape[1] !== width || sShape[2] !== groups) {
    fail(op, 'scales.shape', `[E, N, G] = [${numExperts},${width},${groups}] to match blocks`, `[${sShape}]`);
  }
  const blockData = checkBytes(op, 'blocks.data', blocks.data, numExperts * width * groups * blockBytes);
  const scaleData = checkBytes(op, 'scales.data', scales.data, numExperts * width * groups);
  const l: ExpertWeightLayout = {format: 'mxfp4', numExperts, depth: groups * MXFP4_BLOCK, width, transposed,
                                 groupSize: MXFP4_BLOCK, zeroPoint: false};
  const kw = groups * blockBytes / 4;  // words per row
  const values = new Int32Array(numExperts * width * kw);
  const packedScales = new Int32Array(scalesShape(l)!.reduce((a, b) => a * b, 1));
  const half = width / 2;
  for (let e = 0; e < numExperts; e++) {
    for (let n = 0; n < width; n++) {
      const to = !interleaved ? n : n % 2 === 0 ? n / 2 : half + (n - 1) / 2;
      for (let w = 0, b = ((e * width + n) * kw) * 4; w < kw; w++, b += 4) {
        const word = blockData[b] | blockData[b + 1] << 8 | blockData[b + 2] << 16 | blockData[b + 3] << 24;
        values[transposed ? (e * width + to) * kw + w : (e * kw + w) * width + to] = word;
      }
      for (let g = 0; g < groups; g++) {
        const [word, shift] = scaleAddress(l, e, g, to);
        packedScales[word] |= scaleData[(e * width + n) * groups + g] << shift;
      }
    }
  }
  return {layout: l, data: {values, scales: packedScales, zeroPoints: null}};
}

/** Raw little-endian half-precision data: the bytes of an F16 / BF16 tensor, or its 16-bit patterns. */
export interface PackedHalfData {
  dtype: 'F16' | 'BF16';
  /** [E, K, N], or [E, N, K] with `transposed` (torch Linear, how checkpoints store experts). */
  shape: number[];
  data: Uint8Array | Uint16Array;
  transposed?: boolean;
}

/**
 * F16 / BF16 checkpoint data -> 'float16' / 'bfloat16' weights, bit for bit. In the transposed layout with K even
 * the words are the data itself; otherwise pairs of K-neighbours are joined into words.
 */
export function fromPackedHalf(raw: PackedHalfData): QuantizedExpertWeights {
  const op = 'fromPackedHalf';
  if (raw == null || (raw.dtype !== 'F16' && raw.dtype !== 'BF16')) {
    fail(op, 'raw.dtype', "'F16' or 'BF16'", JSON.stringify(raw?.dtype) ?? String(raw?.dtype));
  }
  const [numExperts, rows, cols] = checkShape(op, 'raw.shape', raw.shape, 3);
  const transposed = raw.transposed ?? false;
  if (typeof transposed !== 'boolean') fail(op, 'raw.transposed', 'a boolean', typeof transposed);
  const count = numExperts * rows * cols;
  const data = raw.data as unknown;
  if (!(data instanceof Uint16Array) && !(data instanceof Uint8Array)) {
    fail(op, 'raw.data', 'a Uint8Array or a Uint16Array', Object.prototype.toString.call(data));
  }
  const byteLength = (data as Uint8Array | Uint16Array).byteLength;
  if (byteLength !== 2 * count) fail(op, 'raw.data', `${2 * count} bytes for its shape`, `${byteLength} bytes`);
  const [depth, width] = transposed ? [cols, rows] : [rows, cols];
  const l: ExpertWeightLayout = {format: raw.dtype === 'F16' ? 'float16' : 'bfloat16', numExperts, depth, width,
                                 transposed, groupSize: 0, zeroPoint: false};
  if (transposed && depth % 2 === 0 && LITTLE_ENDIAN_HOST) {
    // The words are the data itself: one copy (the result must not alias the caller's buffer), no repacking.
    const copy = new Uint8Array(byteLength);
    copy.set(new Uint8Array(raw.data.buffer, raw.data.byteOffset, byteLength));
    return wrap(l, new Int32Array(copy.buffer), null, null);
  }
  const bytes = raw.data instanceof Uint8Array ? raw.data : null;
  const halves = raw.data instanceof Uint16Array ? raw.data :
      Uint16Array.from({length: count}, (_, i) => bytes![2 * i] | bytes![2 * i + 1] << 8);
  const values = new Int32Array(valuesShape(l).reduce((a, b) => a * b, 1));
  let i = 0;
  for (let e = 0; e < numExperts; e++) {
    for (let a = 0; a < rows; a++) {
      for (let b = 0; b < cols; b++, i++) {
        const [word, shift] = transposed ? codeAddress(l, e, b, a) : codeAddress(l, e, a, b);
        values[word] |= halves[i] << shift;
      }
    }
  }
  return wrap(l, values, null, null);
}

function describeArray(a: unknown): string {
  return a != null && typeof a === 'object' && 'length' in a ?
      `${Object.prototype.toString.call(a)} of ${(a as ArrayLike<number>).length} elements` : String(a);
}

function expectArray(op: string, arg: string, a: unknown, length: number, int32: boolean): void {
  const ok = int32 ? a instanceof Int32Array : a instanceof Float32Array || a instanceof Uint16Array;
  if (!ok || (a as ArrayLike<number>).length !== length) {
    fail(op, arg, `${int32 ? 'an Int32Array' : 'a Float32Array or a Uint16Array (float16 bits)'} of ${length} elements`,
         describeArray(a));
  }
}

function toFloatScales(scales: Float32Array | Uint16Array): Float32Array {
  // float16 -> float32 is exact.
  return scales instanceof Uint16Array ? Float32Array.from(scales, halfBitsToFloat) : scales.slice();
}

/** The int4 layout of a GPTQ/AWQ checkpoint after checking its dimensions. */
function checkInt4Checkpoint(
    op: string, t: {numExperts: number, depth: number, width: number, groupSize: number}): ExpertWeightLayout {
  if (t == null || typeof t !== 'object') fail(op, 't', 'an object of checkpoint tensors', String(t));
  for (const d of ['numExperts', 'depth', 'width', 'groupSize'] as const) {
    if (!Number.isSafeInteger(t[d]) || t[d] < 0) fail(op, `t.${d}`, 'a non-negative integer', String(t[d]));
  }
  if (!(INT4_GROUP_SIZES as readonly number[]).includes(t.groupSize)) {
    fail(op, 't.groupSize', `one of ${INT4_GROUP_SIZES.join(', ')}`, String(t.groupSize));
  }
  if (t.depth % 8 !== 0 || t.width % 8 !== 0) {
    fail(op, 't.depth / t.width', 'multiples of 8 (4-bit packing)', `${t.depth} / ${t.width}`);
  }
  return {format: 'int4', numExperts: t.numExperts, depth: t.depth, width: t.width, transposed: false,
          groupSize: t.groupSize, zeroPoint: true};
}

/** One linear layer's 4-bit checkpoint tensors per expert (GPTQ, AWQ), stacked along a leading expert axis. */
export interface Int4CheckpointTensors {
  /** int32 codes: GPTQ [E, K/8, N] packed along K; AWQ [E, K, N/8] packed along N (see fromGptq / fromAwq). */
  qweight: Int32Array;
  /** int32 [E, G, N/8]: 4-bit zero points packed along N. */
  qzeros: Int32Array;
  /** Float32 values [E, G, N], or the raw float16 bit patterns as a Uint16Array. */
  scales: Float32Array | Uint16Array;
  numExperts: number;
  depth: number;   // K
  width: number;   // N
  groupSize: number;
}

/** GPTQ: qweight nibble j of word (kw, n) is k = 8 kw + j; qzeros nibble j of word (g, c) is column 8c + j. */
export interface GptqTensors extends Int4CheckpointTensors {
  /** Optional int32 [E, K] (or [K]): must be k / groupSize (act-order checkpoints are not supported). */
  gIdx?: Int32Array;
  /** Added to each stored zero: 1 for the original GPTQ format (stores zero - 1), 0 for gptq_v2 / exllama v2. */
  zeroOffset?: 0 | 1;
}

/** GPTQ int4 (symmetric or not, no act-order) -> 'int4' with zero points, [E,K,N] layout; qweight is kept as is. */
export function fromGptq(t: GptqTensors): QuantizedExpertWeights {
  const {layout, data} = gptqData(t);
  return wrap(layout, data.values as Int32Array, data.scales, data.zeroPoints);
}

/** fromGptq's layout and host arrays. */
export function gptqData(t: GptqTensors): {layout: ExpertWeightLayout, data: ExpertWeightData} {
  const op = 'fromGptq';
  const l = checkInt4Checkpoint(op, t);
  const {numExperts, depth, width, groupSize} = t;
  const groups = numGroups(l);
  const zeroOffset = t.zeroOffset ?? 1;
  if (zeroOffset !== 0 && zeroOffset !== 1) fail(op, 't.zeroOffset', '0 or 1', String(zeroOffset));
  expectArray(op, 't.qweight', t.qweight, numExperts * depth / 8 * width, true);
  expectArray(op, 't.qzeros', t.qzeros, numExperts * groups * width / 8, true);
  expectArray(op, 't.scales', t.scales, numExperts * groups * width, false);
  if (t.gIdx != null) {
    if (!(t.gIdx instanceof Int32Array) || (t.gIdx.length !== depth && t.gIdx.length !== numExperts * depth)) {
      fail(op, 't.gIdx', `an Int32Array of ${depth} or ${numExperts * depth} elements`, describeArray(t.gIdx));
    }
    const bad = Array.from(t.gIdx).findIndex((g, i) => g !== Math.floor((i % depth) / groupSize));
    if (bad >= 0) {
      fail(op, 't.gIdx', 'k / groupSize for every k (act-order / desc_act checkpoints are not supported)',
           `${t.gIdx[bad]} at flat index ${bad}`);
    }
  }
  const scales = toFloatScales(t.scales);
  const zeroPoints = new Float32Array(numExperts * groups * width);
  for (let i = 0; i < zeroPoints.length; i++) {
    zeroPoints[i] = ((t.qzeros[i >> 3] >>> ((i & 7) * 4)) & 0xf) + zeroOffset;
  }
  return {layout: l, data: {values: t.qweight.slice(), scales, zeroPoints}};
}

/** AWQ (GEMM kernel format): qweight and qzeros interleave the eight columns of a word (AWQ_COLUMN_OF_NIBBLE). */
export type AwqTensors = Int4CheckpointTensors;

/** AWQ interleaves the eight columns of a word: nibble i holds column AWQ_COLUMN_OF_NIBBLE[i] of its group. */
const AWQ_COLUMN_OF_NIBBLE = [0, 2, 4, 6, 1, 3, 5, 7];

/** AWQ int4 -> 'int4' with zero points, [E,K,N] layout: codes re-packed from along N to along K, bit for bit. */
export function fromAwq(t: AwqTensors): QuantizedExpertWeights {
  const {layout, data} = awqData(t);
  return wrap(layout, data.values as Int32Array, data.scales, data.zeroPoints);
}

/** fromAwq's layout and host arrays. */
export function awqData(t: AwqTensors): {layout: ExpertWeightLayout, data: ExpertWeightData} {
  const op = 'fromAwq';
  const l = checkInt4Checkpoint(op, t);
  const {numExperts, depth, width} = t;
  const groups = numGroups(l);
  expectArray(op, 't.qweight', t.qweight, numExperts * depth * width / 8, true);
  expectArray(op, 't.qzeros', t.qzeros, numExperts * groups * width / 8, true);
  expectArray(op, 't.scales', t.scales, numExperts * groups * width, false);
  const nibble = (words: Int32Array, row: number, n: number) => {
    const i = AWQ_COLUMN_OF_NIBBLE.indexOf(n & 7);
    return (words[row * (width / 8) + (n >> 3)] >>> (4 * i)) & 0xf;
  };
  const values = new Int32Array(numExperts * depth / 8 * width);
  for (let e = 0; e < numExperts; e++) {
    for (let k = 0; k < depth; k++) {
      for (let n = 0; n < width; n++) {
        const [word, shift] = codeAddress(l, e, k, n);
        values[word] |= nibble(t.qweight, e * depth + k, n) << shift;
      }
    }
  }
  const zeroPoints = new Float32Array(numExperts * groups * width);
  for (let row = 0; row < numExperts * groups; row++) {
    for (let n = 0; n < width; n++) zeroPoints[row * width + n] = nibble(t.qzeros, row, n);
  }
  return {layout: l, data: {values, scales: toFloatScales(t.scales), zeroPoints}};
}

/**
 * The same weights in the other orientation ([E,K,N] <-> [E,N,K] storage), every code and scale moved bit for
 * bit. Reads q on the host (cpu-like backends).
 */
export function transposeQuantizedExpertWeights(q: QuantizedExpertWeights): QuantizedExpertWeights {
  const op = 'transposeQuantizedExpertWeights';
  const {layout: from, inputs} = checkQuantizedExpertWeights(op, 'q', q);
  const to: ExpertWeightLayout = {...from, transposed: !from.transposed};
  if (from.format === 'float32') {
    const values = tf.transpose(inputs.values!, [0, 2, 1]);
    return {...q, values, transposed: to.transposed, shape: values.shape as [number, number, number]};
  }
  if (tf.getBackend() === 'webgpu') {
    fail(op, 'q', 'packed weights readable synchronously (not on webgpu: transpose on the cpu backend, e.g. at load ' +
         'time)', 'tensors on the webgpu backend');
  }
  const src = inputs.values!.dataSync() as Int32Array;
  const values = new Int32Array(src.length === 0 ? 0 : valuesShape(to).reduce((a, b) => a * b, 1));
  const bits = from.format === 'float16' || from.format === 'bfloat16' ? 16 : from.format === 'int8' ? 8 : 4;
  const mask = (2 ** bits - 1) >>> 0;
  for (let e = 0; e < from.numExperts; e++) {
    for (let k = 0; k < from.depth; k++) {
      for (let n = 0; n < from.width; n++) {
        const [sw, ss] = codeAddress(from, e, k, n), [dw, ds] = codeAddress(to, e, k, n);
        values[dw] |= ((src[sw] >>> ss) & mask) << ds;
      }
    }
  }
  let scales: Float32Array | Int32Array | null = null, zeroPoints: Float32Array | null = null;
  if (inputs.scales != null) {
    const s = inputs.scales.dataSync() as Float32Array | Int32Array, z = inputs.zeroPoints?.dataSync() as Float32Array;
    const size = scalesShape(to)!.reduce((a, b) => a * b, 1);
    scales = from.format === 'mxfp4' ? new Int32Array(size) : new Float32Array(size);
    zeroPoints = z != null ? new Float32Array(size) : null;
    for (let e = 0; e < from.numExperts; e++) {
      for (let g = 0; g < numGroups(from); g++) {
        for (let n = 0; n < from.width; n++) {
          const [si, ss] = scaleAddress(from, e, g, n), [di, ds] = scaleAddress(to, e, g, n);
          if (from.format === 'mxfp4') {
            scales[di] |= ((s[si] >>> ss) & 0xff) << ds;
          } else {
            scales[di] = s[si];
            if (zeroPoints != null) zeroPoints[di] = z[si];
          }
        }
      }
    }
  }
  return wrap(to, values, scales, zeroPoints);
}
