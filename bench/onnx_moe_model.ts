/**
 * Writes the ONNX models the CPU benchmarks run in ONNX Runtime: a MatMul router feeding com.microsoft.MoE
 * (softmax top-k, renormalised, interleaved SwiGLU) on float32 experts, or com.microsoft.QMoE on int8 / int4
 * block-quantized experts holding exactly the codes and scales of a tfjs-moe QuantizedExpertWeights (so both
 * sides compute with the same dequantized weights). The expert weights go to external data beside the model
 * (a protobuf cannot hold the 2.4 GB of the full-width layer). The protobuf is encoded here by hand from the
 * ONNX schema's field numbers (onnx.proto), so the benchmark needs no ONNX tooling.
 *
 * QMoE's layout (onnxruntime's contrib op, CPU and WebGPU EPs): fc1 uint8 [E, 2I, H / (8 / bits)] (rows = output
 * features, gate and up rows interleaved with swiglu_fusion = 1), fc1_scales float32 [E, 2I, H / block_size],
 * fc2 uint8 [E, H, I / (8 / bits)], fc2_scales [E, H, I / block_size]; codes packed along the input axis, the
 * lower k in the lower nibble; with no zero-point input a code c stands for (c - 2^(bits-1)) * scale, i.e.
 * uint8 with 128 for int8 and the nibble with 8 for int4. docs/formats.md's int8 (two's complement) is that
 * uint8 with its top bit flipped; its symmetric int4 nibble is the same nibble.
 */
import {closeSync, openSync, writeFileSync, writeSync} from 'node:fs';
import {join} from 'node:path';

class Proto {
  private readonly parts: Uint8Array[] = [];

  private bytes(b: Uint8Array): void {
    this.parts.push(b);
  }

  private varint(v: number): void {
    const out: number[] = [];
    let x = v;
    while (x >= 128) {
      out.push((x % 128) | 128);
      x = Math.floor(x / 128);
    }
    out.push(x);
    this.bytes(Uint8Array.from(out));
  }

  private key(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.raw(field, new TextEncoder().encode(s));
  }

  raw(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.bytes(b);
    return this;
  }

  message(field: number, m: Proto): this {
    return this.raw(field, m.finish());
  }

  finish(): Uint8Array {
    const total = this.parts.reduce((s, p) => s + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

const FLOAT = 1;
const UINT8 = 2;
type Attr = {name: string, int?: number, float?: number, string?: string};

function attribute(a: Attr): Proto {
  const p = new Proto().string(1, a.name);
  if (a.float != null) return p.float(2, a.float).int(20, 1);
  if (a.int != null) return p.int(3, a.int).int(20, 2);
  return p.raw(4, new TextEncoder().encode(a.string!)).int(20, 3);
}

function node(opType: string, inputs: string[], outputs: string[], domain: string, attrs: Attr[]): Proto {
  const p = new Proto();
  for (const i of inputs) p.string(1, i);
  for (const o of outputs) p.string(2, o);
  p.string(3, `${opType}_0`).string(4, opType);
  for (const a of attrs) p.message(5, attribute(a));
  if (domain !== '') p.string(7, domain);
  return p;
}

function valueInfo(name: string, dims: Array<number | string>): Proto {
  const shape = new Proto();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Proto().int(1, d) : new Proto().string(2, d));
  const tensorType = new Proto().int(1, FLOAT).message(2, shape);
  return new Proto().string(1, name).message(2, new Proto().message(1, tensorType));
}

function externalTensor(name: string, dims: number[], file: string, offset: number, length: number,
                        dataType = FLOAT): Proto {
  const p = new Proto();
  for (const d of dims) p.int(1, d);
  p.int(2, dataType).string(8, name);
  for (const [k, v] of [['location', file], ['offset', String(offset)], ['length', String(length)]]) {
    p.message(13, new Proto().string(1, k).string(2, v));
  }
  return p.int(14, 1);
}

export interface MoeLayerArrays {
  H: number;
  I: number;
  E: number;
  k: number;
  /** [H,E] */
  gate: Float32Array;
  /** [E,H,2I], gate columns first (tfjs-moe's up_gate_proj_weight) */
  upGate: Float32Array;
  /** [E,I,H] */
  down: Float32Array;
}

/** Calls put(chunk) with fc1 [E, 2I, H] (gate and up rows interleaved: swiglu_fusion = 1), expert by expert. */
function forEachFc1Expert(w: MoeLayerArrays, put: (a: Float32Array) => void): void {
  const {H, I, E} = w;
  const fc1 = new Float32Array(2 * I * H);
  for (let e = 0; e < E; e++) {
    const src = w.upGate.subarray(e * H * 2 * I, (e + 1) * H * 2 * I);
    for (let i = 0; i < I; i++) {
      for (let h = 0; h < H; h++) {
        fc1[2 * i * H + h] = src[h * 2 * I + i];
        fc1[(2 * i + 1) * H + h] = src[h * 2 * I + I + i];
      }
    }
    put(fc1);
  }
}

/** Calls put(chunk) with fc2 [E, H, I], expert by expert. */
function forEachFc2Expert(w: MoeLayerArrays, put: (a: Float32Array) => void): void {
  const {H, I, E} = w;
  const fc2 = new Float32Array(H * I);
  for (let e = 0; e < E; e++) {
    const src = w.down.subarray(e * I * H, (e + 1) * I * H);
    for (let h = 0; h < H; h++) for (let i = 0; i < I; i++) fc2[h * I + i] = src[i * H + h];
    put(fc2);
  }
}

/** The MoE node: float32 experts (MoE), or QMoE with `quant` (bits and block size of its scales). */
function moeNode(k: number, quant: {bits: number, blockSize: number} | null): Proto {
  const common: Attr[] = [
    {name: 'k', int: k},
    {name: 'activation_type', string: 'swiglu'},
    {name: 'normalize_routing_weights', int: 1},
    {name: 'swiglu_fusion', int: 1},
    {name: 'activation_alpha', float: 1},
    {name: 'activation_beta', float: 0},
  ];
  if (quant == null) return node('MoE', ['input', 'router_logits', 'fc1', '', 'fc2'], ['output'], 'com.microsoft', common);
  return node('QMoE', ['input', 'router_logits', 'fc1', 'fc1_scales', '', 'fc2', 'fc2_scales'], ['output'],
              'com.microsoft', [...common, {name: 'expert_weight_bits', int: quant.bits},
                {name: 'block_size', int: quant.blockSize}]);
}

function modelProto(w: {H: number, k: number}, initializers: Proto[],
                    quant: {bits: number, blockSize: number} | null = null): Uint8Array {
  const {H, k} = w;
  const graph = new Proto()
      .message(1, node('MatMul', ['input', 'router_weight'], ['router_logits'], '', []))
      .message(1, moeNode(k, quant))
      .string(2, 'moe_layer');
  for (const t of initializers) graph.message(5, t);
  graph.message(11, valueInfo('input', ['T', H])).message(12, valueInfo('output', ['T', H]));
  return new Proto()
      .int(1, 8)
      .string(2, 'tfjs-moe bench')
      .message(7, graph)
      .message(8, new Proto().string(1, '').int(2, 17))
      .message(8, new Proto().string(1, 'com.microsoft').int(2, 1))
      .finish();
}

/**
 * Writes model.onnx and weights.bin (external data) into dir and returns the model's path: fc1 [E, 2I, H] with
 * gate and up rows interleaved (swiglu_fusion = 1), fc2 [E, H, I], the layouts of ORT's MoE, transposed from ours.
 */
export function writeOrtMoeModel(dir: string, w: MoeLayerArrays): string {
  const {H, I, E} = w;
  const dataFile = 'weights.bin';
  const fd = openSync(join(dir, dataFile), 'w');
  let offset = 0;
  const put = (a: Float32Array) => {
    writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    offset += a.byteLength;
  };
  put(w.gate);
  const fc1At = offset;
  forEachFc1Expert(w, put);
  const fc2At = offset;
  forEachFc2Expert(w, put);
  closeSync(fd);
  const path = join(dir, 'model.onnx');
  writeFileSync(path, modelProto(w, [
    externalTensor('router_weight', [H, E], dataFile, 0, H * E * 4),
    externalTensor('fc1', [E, 2 * I, H], dataFile, fc1At, E * 2 * I * H * 4),
    externalTensor('fc2', [E, H, I], dataFile, fc2At, E * H * I * 4),
  ]));
  return path;
}

function inlineTensor(name: string, dims: number[], data: Float32Array | Uint8Array): Proto {
  const p = new Proto();
  for (const d of dims) p.int(1, d);
  return p.int(2, data instanceof Uint8Array ? UINT8 : FLOAT).string(8, name)
      .raw(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** The same model with the weights inside (under the protobuf's 2 GB: the 1/4-width layer), for onnxruntime-web. */
export function ortMoeModelBytes(w: MoeLayerArrays): Uint8Array {
  const {H, I, E} = w;
  const collect = (each: (w: MoeLayerArrays, put: (a: Float32Array) => void) => void, n: number) => {
    const all = new Float32Array(n);
    let at = 0;
    each(w, a => {
      all.set(a, at);
      at += a.length;
    });
    return all;
  };
  return modelProto(w, [
    inlineTensor('router_weight', [H, E], w.gate),
    inlineTensor('fc1', [E, 2 * I, H], collect(forEachFc1Expert, E * 2 * I * H)),
    inlineTensor('fc2', [E, H, I], collect(forEachFc2Expert, E * H * I)),
  ]);
}

// ---- QMoE ------------------------------------------------------------------------------------------------------

/**
 * One expert projection as tfjs-moe holds it (docs/formats.md): int8 or symmetric int4 codes in the [E,K,N]
 * layout (values int32 [E, ceil(K/P), N]), scales float32 [E, G, N], G = K / groupSize.
 */
export interface PackedProjection {
  format: 'int8' | 'int4';
  groupSize: number;
  /** [E, K, N] */
  shape: [number, number, number];
  values: Int32Array;
  scales: Float32Array;
}

export interface QMoeLayerArrays {
  H: number;
  I: number;
  E: number;
  k: number;
  /** [H,E] */
  gate: Float32Array;
  /** [E,H,2I] packed, gate columns first */
  upGate: PackedProjection;
  /** [E,I,H] packed */
  down: PackedProjection;
}

/**
 * QMoE's uint8 codes [E, N, K*bits/8] and scales [E, N, G] of p, its output rows in the order rowColumn(r)
 * (the column of ours that ORT's row r is).
 */
function qmoeRows(p: PackedProjection, rowColumn: (r: number) => number): {codes: Uint8Array, scales: Float32Array} {
  const [E, K, N] = p.shape;
  const bits = p.format === 'int8' ? 8 : 4, perWord = 32 / bits, kw = Math.ceil(K / perWord);
  const groups = Math.ceil(K / p.groupSize);
  const rowBytes = K * bits / 8;
  if (!Number.isInteger(rowBytes) || K % p.groupSize !== 0) {
    throw new Error(`QMoE needs K (${K}) a multiple of the group size (${p.groupSize}) and of 8 / bits`);
  }
  const codes = new Uint8Array(E * N * rowBytes), scales = new Float32Array(E * N * groups);
  const word = new Int32Array(1), bytes = new Uint8Array(word.buffer);
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < N; r++) {
      const n = rowColumn(r);
      const dst = (e * N + r) * rowBytes;
      for (let w = 0; w < kw; w++) {
        // A word holds perWord consecutive k of column n, the lowest k in its lowest bits: its little-endian
        // bytes are ORT's bytes (4-bit: two k per byte, the lower k in the low nibble), int8 with the top bit
        // flipped (two's complement q -> q + 128).
        word[0] = p.values[(e * kw + w) * N + n];
        for (let b = 0; b < 4 && w * 4 + b < rowBytes; b++) codes[dst + w * 4 + b] = bits === 8 ? bytes[b] ^ 0x80 : bytes[b];
      }
      for (let g = 0; g < groups; g++) scales[(e * N + r) * groups + g] = p.scales[(e * groups + g) * N + n];
    }
  }
  return {codes, scales};
}

function qmoeTensors(w: QMoeLayerArrays) {
  const {H, I, E, upGate, down} = w;
  if (upGate.format !== down.format || upGate.groupSize !== down.groupSize) {
    throw new Error('QMoE: both projections need one format and group size');
  }
  const bits = upGate.format === 'int8' ? 8 : 4;
  // swiglu_fusion = 1: fc1 row 2i is gate column i, row 2i + 1 up column I + i.
  const fc1 = qmoeRows(upGate, r => (r & 1) === 0 ? r >> 1 : I + (r >> 1));
  const fc2 = qmoeRows(down, r => r);
  return {
    bits, blockSize: upGate.groupSize, fc1, fc2,
    dims: {fc1: [E, 2 * I, H * bits / 8], fc1Scales: [E, 2 * I, H / upGate.groupSize], fc2: [E, H, I * bits / 8],
      fc2Scales: [E, H, I / down.groupSize]},
  };
}

/**
 * Writes qmodel.onnx and qweights.bin (external data) into dir and returns the model's path: a MatMul router
 * feeding com.microsoft.QMoE (expert_weight_bits 8 or 4, block_size = the group size) whose codes and scales
 * are exactly w's.
 */
export function writeOrtQMoeModel(dir: string, w: QMoeLayerArrays): string {
  const {H, E} = w;
  const t = qmoeTensors(w);
  const dataFile = 'qweights.bin';
  const fd = openSync(join(dir, dataFile), 'w');
  let offset = 0;
  const put = (a: Float32Array | Uint8Array) => {
    const at = offset;
    writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    offset += a.byteLength;
    return at;
  };
  const parts = [
    ['router_weight', [H, E], put(w.gate), w.gate.byteLength, FLOAT],
    ['fc1', t.dims.fc1, put(t.fc1.codes), t.fc1.codes.byteLength, UINT8],
    ['fc1_scales', t.dims.fc1Scales, put(t.fc1.scales), t.fc1.scales.byteLength, FLOAT],
    ['fc2', t.dims.fc2, put(t.fc2.codes), t.fc2.codes.byteLength, UINT8],
    ['fc2_scales', t.dims.fc2Scales, put(t.fc2.scales), t.fc2.scales.byteLength, FLOAT],
  ] as const;
  closeSync(fd);
  const path = join(dir, 'qmodel.onnx');
  writeFileSync(path, modelProto(w, parts.map(([name, dims, at, length, type]) =>
    externalTensor(name, [...dims], dataFile, at, length, type)), {bits: t.bits, blockSize: t.blockSize}));
  return path;
}

/** The QMoE model with the weights inside (onnxruntime-web, and ORT's WebGPU EP harness). */
export function ortQMoeModelBytes(w: QMoeLayerArrays): Uint8Array {
  const t = qmoeTensors(w);
  return modelProto(w, [
    inlineTensor('router_weight', [w.H, w.E], w.gate),
    inlineTensor('fc1', t.dims.fc1, t.fc1.codes),
    inlineTensor('fc1_scales', t.dims.fc1Scales, t.fc1.scales),
    inlineTensor('fc2', t.dims.fc2, t.fc2.codes),
    inlineTensor('fc2_scales', t.dims.fc2Scales, t.fc2.scales),
  ], {bits: t.bits, blockSize: t.blockSize});
}
