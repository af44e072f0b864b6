/**
 * A Hugging Face block's routed experts straight into the layer's expert weight format (docs/formats.md 11), one
 * expert at a time on the host: the peak is the packed layer plus one expert's float32, never the layer's float32.
 * Sources:
 * - float32 tensors or raw F16/BF16 data (readSafetensors keepDtype), torch's Linear orientation ([out, in] per
 *   expert), transposed here into the layer's [in, out]; raw halves into their own half format are copied as
 *   16-bit patterns (no float32 at all);
 * - gpt-oss's MXFP4 `*_blocks` / `*_scales`: into 'mxfp4' as the same codes, into other formats through the exact
 *   dequantization;
 * - GPTQ / AWQ int4 (`qweight` / `qzeros` / `scales` per expert): into 'int4' with the checkpoint's group size and
 *   zero points as the same codes, into other formats through the exact dequantization.
 */
import * as tf from '@tensorflow/tfjs-core';

import {defaultGroupSize, hasScales} from '../executor/expert_weights.js';
import type {ExpertWeightName, FusedMoEOptions} from '../executor/layer_schema.js';
import {
  decodeColumn, ExpertWeightData, ExpertWeightLayout, halfToFloatTable, scalesShape, valuesShape,
} from '../kernels/expert_weight_formats.js';
import {createExpertWeightsBuilder, ExpertWeightsBuilder, QuantizedExpertWeights} from '../ops/quantize_expert_weights.js';
import type {HfMoeSpec} from './hf_families.js';
import type {WeightSource} from './hf_import.js';
import {awqData, gptOssMxfp4Data, gptqData} from './quantized_checkpoints.js';
import {isRawSafetensor, RawSafetensor} from './safetensors.js';

type Experts = Record<ExpertWeightName, QuantizedExpertWeights>;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(what: string): never {
  throw new Error(`loadHuggingFaceMoe: ${what}`);
}

/**
 * A float source's host data. On webgpu a synchronous read throws in Node and can return zeros in browsers once
 * the data lives on the GPU, so float experts are refused there; integer code tensors (MXFP4 bytes, GPTQ words)
 * are read as the reader made them (webgpu keeps a new tensor's values on the host until a kernel uploads them).
 */
function hostData(t: tf.Tensor): Float32Array | Int32Array {
  if (tf.getBackend() === 'webgpu' && t.dtype === 'float32') {
    fail('packed expert formats convert on the host; load on the cpu backend (the layer then runs on any backend)');
  }
  return t.dataSync() as Float32Array | Int32Array;
}

/** The 16-bit patterns of rows [first, first + rows) of a raw [.., cols] F16/BF16 tensor (a view when aligned). */
function rawHalves(src: RawSafetensor, first: number, rows: number, cols: number): Uint16Array {
  const offset = src.data.byteOffset + 2 * first * cols, count = rows * cols;
  if (LITTLE_ENDIAN_HOST && offset % 2 === 0) return new Uint16Array(src.data.buffer, offset, count);
  const view = new DataView(src.data.buffer, offset, 2 * count);
  return Uint16Array.from({length: count}, (_, i) => view.getUint16(2 * i, true));
}

/** Rows [first, first + rows) of a [.., cols] float source as float32 (one expert's part). */
function readRows(src: tf.Tensor | RawSafetensor, first: number, rows: number, cols: number): Float32Array {
  if (src instanceof tf.Tensor) return (hostData(src) as Float32Array).subarray(first * cols, (first + rows) * cols);
  const half = rawHalves(src, first, rows, cols);
  const out = new Float32Array(rows * cols);
  if (src.dtype === 'BF16') {
    // bfloat16 is the top half of a float32 (docs/formats.md 3): shift the bits into place.
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < out.length; i++) bits[i] = half[i] << 16;
  } else {
    const table = halfToFloatTable();
    for (let i = 0; i < out.length; i++) out[i] = table[half[i]];
  }
  return out;
}

/** out[k * stride + col0 + n] = rows[n * depth + k]: torch [out, in] rows into the layer's [in, out] columns. */
function transposeInto(rows: Float32Array, width: number, depth: number, out: Float32Array, col0: number,
                       stride: number): void {
  for (let n = 0; n < width; n++) {
    const row = n * depth;
    for (let k = 0; k < depth; k++) out[k * stride + col0 + n] = rows[row + k];
  }
}

/** Rows [first, first + rows) of a torch-orientation source: one expert's part of a projection. */
interface RowRange {
  src: tf.Tensor | RawSafetensor;
  first: number;
  rows: number;
}

/**
 * Expert e of one projection ([N, K] in torch rows, the parts stacked along N) into the builder: as 16-bit
 * patterns when every part is raw data of the builder's half format, else through float32.
 */
class ExpertFiller {
  private readonly floats: Float32Array;
  private halves: Uint16Array | null = null;
  constructor(private readonly builder: ExpertWeightsBuilder, private readonly depth: number,
              private readonly width: number, private readonly half: 'F16' | 'BF16' | null) {
    this.floats = new Float32Array(depth * width);
  }

  fill(e: number, parts: RowRange[]): void {
    const {depth, width} = this;
    if (this.half != null && parts.every(p => isRawSafetensor(p.src) && p.src.dtype === this.half)) {
      let bits: Uint16Array;
      if (parts.length === 1) {
        bits = rawHalves(parts[0].src as RawSafetensor, parts[0].first, parts[0].rows, depth);
      } else {
        bits = this.halves ??= new Uint16Array(depth * width);
        let row = 0;
        for (const p of parts) {
          bits.set(rawHalves(p.src as RawSafetensor, p.first, p.rows, depth), row * depth);
          row += p.rows;
        }
      }
      this.builder.setExpertHalves(e, bits, 'nk');
      return;
    }
    let col0 = 0;
    for (const p of parts) {
      transposeInto(readRows(p.src, p.first, p.rows, depth), p.rows, depth, this.floats, col0, width);
      col0 += p.rows;
    }
    this.builder.setExpert(e, this.floats);
  }
}

function halfDtypeOf(format: FusedMoEOptions['expertWeightFormat']): 'F16' | 'BF16' | null {
  return format === 'float16' ? 'F16' : format === 'bfloat16' ? 'BF16' : null;
}

function layerBuilder(shape: [number, number, number], o: Readonly<FusedMoEOptions>): ExpertWeightsBuilder {
  const format = o.expertWeightFormat;
  return createExpertWeightsBuilder(shape, format, hasScales(format) ?
      {groupSize: defaultGroupSize(format, shape[1], o.quantGroupSize), zeroPoint: o.quantZeroPoint} : {});
}

/** Both projections built, or neither left behind. */
function buildBoth(upGate: () => QuantizedExpertWeights, down: () => QuantizedExpertWeights): Experts {
  const upGateQ = upGate();
  try {
    return {up_gate_proj_weight: upGateQ, down_proj_weight: down()};
  } catch (err) {
    tf.dispose(upGateQ as unknown as tf.TensorContainer);
    throw err;
  }
}

/** Float (float32 tensors or raw F16/BF16) experts in torch's [out, in] orientation. */
export function loadExpertsPacked(spec: HfMoeSpec, src: WeightSource, fused: boolean, o: Readonly<FusedMoEOptions>):
    Experts {
  const {hiddenSize: H, naming} = spec;
  const {numExperts: E, moeIntermediateSize: I} = spec.options;
  const upGate = layerBuilder([E, H, 2 * I], o), down = layerBuilder([E, I, H], o);
  const half = halfDtypeOf(o.expertWeightFormat);
  const upGateFiller = new ExpertFiller(upGate, H, 2 * I, half), downFiller = new ExpertFiller(down, I, H, half);
  const {gate: g, up: u, down: d} = naming.expertProj;
  const fusedUpGate = fused ? src.source(src.first(naming.fusedGateUp)!, [E, 2 * I, H], 'fused experts [E,2I,H]') : null;
  const fusedDown = fused ?
      src.source(src.first(naming.fusedDown) ?? naming.fusedDown[0], [E, H, I], 'fused experts [E,H,I]') : null;
  for (let e = 0; e < E; e++) {
    if (fusedUpGate != null) {
      upGateFiller.fill(e, [{src: fusedUpGate, first: e * 2 * I, rows: 2 * I}]);
      downFiller.fill(e, [{src: fusedDown!, first: e * H, rows: H}]);
    } else {
      const part = (proj: string, shape: [number, number]): RowRange =>
          ({src: src.source(`experts.${e}.${proj}.weight`, shape, `expert ${e} ${proj}.weight`), first: 0, rows: shape[0]});
      upGateFiller.fill(e, [part(g, [I, H]), part(u, [I, H])]);
      downFiller.fill(e, [part(d, [H, I])]);
    }
  }
  return buildBoth(() => upGate.build(), () => down.build());
}

/** Whether the layer's options describe exactly the source's packed layout (then the codes are kept). */
function sameLayout(l: ExpertWeightLayout, o: Readonly<FusedMoEOptions>): boolean {
  return o.expertWeightFormat === l.format && defaultGroupSize(l.format, l.depth, o.quantGroupSize) === l.groupSize &&
      o.quantZeroPoint === l.zeroPoint && !l.transposed;
}

/**
 * Packed weights of any layout into the layer's: the same tensors when the layout is the layer's, else every
 * expert decoded exactly (docs/formats.md 3) and quantized into the layer's format one expert at a time.
 */
function intoLayerFormat(l: ExpertWeightLayout, d: ExpertWeightData, o: Readonly<FusedMoEOptions>):
    QuantizedExpertWeights {
  if (sameLayout(l, o)) {
    const q: QuantizedExpertWeights = {format: l.format, shape: [l.numExperts, l.depth, l.width], transposed: false,
      groupSize: l.groupSize, zeroPoint: l.zeroPoint, values: tf.tensor(d.values, valuesShape(l), 'int32')};
    if (d.scales != null) q.scales = tf.tensor(d.scales, scalesShape(l)!, l.format === 'mxfp4' ? 'int32' : 'float32');
    if (d.zeroPoints != null) q.zeroPoints = tf.tensor(d.zeroPoints, scalesShape(l)!, 'float32');
    return q;
  }
  const {numExperts: E, depth: K, width: N} = l;
  const builder = layerBuilder([E, K, N], o);
  const expert = new Float32Array(K * N);
  for (let e = 0; e < E; e++) {
    for (let n = 0; n < N; n++) decodeColumn(l, d, e, n, 0, K, expert, n, N);
    builder.setExpert(e, expert);
  }
  return builder.build();
}

/** U8 bytes as the reader gives them: raw data, or an int32 tensor of byte values. */
function bytesOf(t: tf.Tensor | RawSafetensor): Uint8Array | Int32Array {
  return isRawSafetensor(t) ? t.data : hostData(t) as Int32Array;
}

/**
 * gpt-oss's hub MXFP4 experts `<rel>_blocks` U8 [E,N,K/32,16] / `<rel>_scales` U8 [E,N,K/32]. Gate/up rows are
 * interleaved (2i gate i, 2i+1 up i): whole rows of codes move to the layer's gate-first order.
 */
export function loadGptOssMxfp4Experts(spec: HfMoeSpec, src: WeightSource, o: Readonly<FusedMoEOptions>): Experts {
  const {hiddenSize: H, naming} = spec;
  const {numExperts: E, moeIntermediateSize: I} = spec.options;
  const proj = (rel: string, N: number, K: number, interleaved: boolean, meaning: string) => () => {
    const groups = K / 32;
    if (!Number.isInteger(groups)) fail(`${meaning}: MXFP4 needs the input width ${K} to be a multiple of 32`);
    const blocks = src.getAny(`${rel}_blocks`, [E, N, groups, 16], `${meaning} MXFP4 blocks`, ['U8', 'int32']);
    const scales = src.getAny(`${rel}_scales`, [E, N, groups], `${meaning} MXFP4 scales`, ['U8', 'int32']);
    const {layout, data} = gptOssMxfp4Data({data: bytesOf(blocks), shape: blocks.shape},
                                           {data: bytesOf(scales), shape: scales.shape},
                                           {transposed: false, interleaved});
    return intoLayerFormat(layout, data, o);
  };
  return buildBoth(proj(naming.fusedGateUp[0], 2 * I, H, true, 'experts gate_up_proj'),
                   proj(naming.fusedDown[0], H, I, false, 'experts down_proj'));
}

/** A GPTQ / AWQ checkpoint's int4 scheme (from config.json's quantization_config and the tensors). */
export interface Int4Checkpoint {
  method: 'gptq' | 'awq';
  groupSize: number;
  /** GPTQ: added to the stored zeros (1 for the original format, 0 for gptq_v2). */
  zeroOffset: 0 | 1;
}

/** The experts' GPTQ / AWQ scheme, or null when the experts are not stored as `qweight`. */
export function int4Checkpoint(config: unknown, spec: HfMoeSpec, src: WeightSource): Int4Checkpoint | null {
  const {gate} = spec.naming.expertProj;
  const qweight = `experts.0.${gate}.qweight`;
  if (!src.has(qweight)) return null;
  const qc = (config as Record<string, unknown>)?.quantization_config as Record<string, unknown> | undefined;
  const method = qc?.quant_method;
  if (method !== 'gptq' && method !== 'awq') {
    fail(`weight '${src.name(qweight)}' is a quantized expert, but config.json's quantization_config.quant_method is ${
        JSON.stringify(method) ?? 'absent'} (supported: 'gptq', 'awq')`);
  }
  if (qc!.bits != null && qc!.bits !== 4) fail(`quantization_config.bits must be 4 (int4), got ${JSON.stringify(qc!.bits)}`);
  if (method === 'gptq' && qc!.desc_act === true) {
    fail('quantization_config.desc_act is true: act-order GPTQ checkpoints are not supported (their groups are not ' +
         'contiguous along K)');
  }
  if (method === 'awq' && qc!.version != null && String(qc!.version).toLowerCase() !== 'gemm') {
    fail(`quantization_config.version must be 'gemm' for AWQ (the packing loaded here), got ${JSON.stringify(qc!.version)}`);
  }
  const groupSize = qc!.group_size;
  if (!Number.isSafeInteger(groupSize) || (groupSize as number) <= 0) {
    fail(`quantization_config.group_size must be a positive integer (32, 64 or 128), got ${JSON.stringify(groupSize)}`);
  }
  const format = qc!.checkpoint_format;
  return {method, groupSize: groupSize as number, zeroOffset: method === 'gptq' && format !== 'gptq_v2' ? 1 : 0};
}

/** Columns of several [E, rows, cols_i] arrays side by side: [E, rows, sum cols_i] (gate and up along N). */
function concatColumns<T extends Int32Array | Float32Array>(parts: T[], widths: number[], rows: number, make: (n: number) => T): T {
  const total = widths.reduce((a, b) => a + b, 0);
  const out = make(rows * total);
  for (let r = 0; r < rows; r++) {
    let col = 0;
    parts.forEach((p, i) => {
      out.set(p.subarray(r * widths[i], (r + 1) * widths[i]), r * total + col);
      col += widths[i];
    });
  }
  return out;
}

/**
 * GPTQ / AWQ experts (per expert `experts.{e}.{proj}.qweight` / `.qzeros` / `.scales`, optionally `.g_idx`),
 * gate and up joined along N into the layer's up_gate layout, bit for bit (docs/formats.md 5.3, 5.4).
 */
export function loadInt4CheckpointExperts(spec: HfMoeSpec, src: WeightSource, ckpt: Int4Checkpoint,
                                          o: Readonly<FusedMoEOptions>): Experts {
  const {hiddenSize: H, naming} = spec;
  const {numExperts: E, moeIntermediateSize: I} = spec.options;
  const {gate: gp, up: up, down: dp} = naming.expertProj;
  const G = (K: number) => Math.ceil(K / ckpt.groupSize);
  /** One expert's projection [K, N] as int4 data ([1, K/8, N] words, [1, G, N] scales and zero points). */
  const expertProj = (e: number, proj: string, K: number, N: number) => {
    const rel = (part: string) => `experts.${e}.${proj}.${part}`;
    const meaning = (part: string) => `expert ${e} ${proj}.${part} (${ckpt.method.toUpperCase()})`;
    const words = (part: string, shape: number[]) =>
        hostData(src.getAny(rel(part), shape, meaning(part), ['int32']) as tf.Tensor) as Int32Array;
    const scalesT = src.getAny(rel('scales'), [G(K), N], meaning('scales'), ['F16', 'float32']);
    const scales = isRawSafetensor(scalesT) ? rawHalves(scalesT, 0, G(K), N) : hostData(scalesT) as Float32Array;
    const common = {numExperts: 1, depth: K, width: N, groupSize: ckpt.groupSize, scales,
                    qzeros: words('qzeros', [G(K), N / 8])};
    const gIdx = ckpt.method === 'gptq' && src.has(rel('g_idx')) ? words('g_idx', [K]) : undefined;
    const qweight = words('qweight', ckpt.method === 'awq' ? [K, N / 8] : [K / 8, N]);
    try {
      return ckpt.method === 'awq' ? awqData({...common, qweight}) :
          gptqData({...common, qweight, gIdx, zeroOffset: ckpt.zeroOffset});
    } catch (err) {
      fail(`weights '${src.name(rel('*'))}': ${(err as Error).message}`);
    }
  };
  const build = (K: number, N: number, projs: string[]) => () => {
    const l: ExpertWeightLayout = {format: 'int4', numExperts: E, depth: K, width: N, transposed: false,
                                   groupSize: ckpt.groupSize, zeroPoint: true};
    const values = new Int32Array(E * K / 8 * N), scales = new Float32Array(E * G(K) * N);
    const zeroPoints = new Float32Array(scales.length);
    const widths = projs.map(() => N / projs.length);
    for (let e = 0; e < E; e++) {
      const parts = projs.map(p => expertProj(e, p, K, N / projs.length).data);
      values.set(concatColumns(parts.map(p => p.values as Int32Array), widths, K / 8, n => new Int32Array(n)), e * K / 8 * N);
      scales.set(concatColumns(parts.map(p => p.scales as Float32Array), widths, G(K), n => new Float32Array(n)), e * G(K) * N);
      zeroPoints.set(concatColumns(parts.map(p => p.zeroPoints!), widths, G(K), n => new Float32Array(n)), e * G(K) * N);
    }
    return intoLayerFormat(l, {values, scales, zeroPoints}, o);
  };
  return buildBoth(build(H, 2 * I, [gp, up]), build(I, H, [dp]));
}
