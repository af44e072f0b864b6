/**
 * Writes the ONNX model the CPU benchmark runs in ONNX Runtime: a MatMul router feeding com.microsoft.MoE
 * (softmax top-k, renormalised, interleaved SwiGLU), with the expert weights as external data beside the model
 * (a protobuf cannot hold the 2.4 GB of the full-width layer). The protobuf is encoded here by hand from the
 * ONNX schema's field numbers (onnx.proto), so the benchmark needs no ONNX tooling.
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

function externalTensor(name: string, dims: number[], file: string, offset: number, length: number): Proto {
  const p = new Proto();
  for (const d of dims) p.int(1, d);
  p.int(2, FLOAT).string(8, name);
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

function modelProto(w: MoeLayerArrays, initializers: Proto[]): Uint8Array {
  const {H, k} = w;
  const graph = new Proto()
      .message(1, node('MatMul', ['input', 'router_weight'], ['router_logits'], '', []))
      .message(1, node('MoE', ['input', 'router_logits', 'fc1', '', 'fc2'], ['output'], 'com.microsoft', [
        {name: 'k', int: k},
        {name: 'activation_type', string: 'swiglu'},
        {name: 'normalize_routing_weights', int: 1},
        {name: 'swiglu_fusion', int: 1},
        {name: 'activation_alpha', float: 1},
        {name: 'activation_beta', float: 0},
      ]))
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

function inlineTensor(name: string, dims: number[], data: Float32Array): Proto {
  const p = new Proto();
  for (const d of dims) p.int(1, d);
  return p.int(2, FLOAT).string(8, name).raw(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
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
