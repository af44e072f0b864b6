/**
 * How fast the decode GEMMs' weight access pattern can stream on a real GPU, without their arithmetic (issue 15:
 * at T = 16 the int4 upGate / down programs move their codes at 1.1-1.3 TB/s of the H200's ~3.4). Raw WebGPU
 * (dawn.node), no tfjs: [experts][word rows][vec4 columns] of u32 words (int4 codes: 8 k per word), read by
 * workgroups of 256 threads laid out as the decode programs are (NVW vec4 columns x KS k-lanes; lane s takes
 * steps s, s + KS, ... of WRS word rows each), the words XOR-ed together (kept live by a conditional store). Each
 * row changes one parameter: the tile (NVW x KS), the word rows per step, two steps' loads before their use,
 * and a plain contiguous copy-like read of the same bytes (the ceiling). Per-dispatch time from a pass of 4
 * dispatches, medians of 7; GB/s of the bytes read.
 *
 * Run (GPU machine): node webgpu_stream_probe.mjs; writes $OUT/webgpu_stream_probe.json.
 */
import {writeFileSync} from 'fs';

import type {ExpertWeightLayout} from '../src/executor/expert_weights.js';
import {packedStep, packedStepConsts, packedWords, STREAM_WORD_ROWS} from '../src/kernels/webgpu/batched_gemm_snippets.js';
import {wordDecoder, WordDecoderOptions} from '../src/kernels/webgpu/quantized_webgpu.js';

import {timePassMs} from './webgpu_pass_timing.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const outDir = process.env.OUT ?? 'bench/results';
const REPS = Number(process.env.BENCH_REPS ?? 7);
const ACTIVE = Number(process.env.BENCH_ACTIVE ?? 81);

interface Probe {
  /** Word rows and vec4 columns of one expert (upGate int4: 256 x 384; down: 96 x 512). */
  wr: number;
  nv: number;
  nvw: number;
  ks: number;
  wrs: number;
  /** Two steps' loads issued before either is used. */
  pair?: boolean;
  /** Contiguous read of the expert's words (thread i: words i, i + 256, ...), no tile layout. */
  linear?: boolean;
  /**
   * The decode programs' real packed step (int4 g32, decode_programs.ts packedStream) for this many rows of x
   * instead of the XOR: the arithmetic's cost over the loads' (with the group scales read as upGate does).
   */
  rows?: number;
  /** With rows: the word decoder's options (absent: int4 codes as float16 patterns, as the table). */
  decoder?: WordDecoderOptions;
  /** With rows: each quad of codes decoded once for all rows (the table's choice; absent: true). */
  decodeOnce?: boolean;
  /** With rows: the next step's words loaded before the current step's arithmetic (DecodeTiles.upPrefetch). */
  prefetch?: boolean;
  /** With rows: the words and x read without bounds checks (DecodeTiles.unchecked). */
  unchecked?: boolean;
}

/** The probe with the real int4 g32 step: weights [E, K = 8 * wr, N = 4 * nv], x [rows, K], one output per thread. */
function mathCode(p: Probe): string {
  const l: ExpertWeightLayout = {format: 'int4', numExperts: ACTIVE, depth: 8 * p.wr, width: 4 * p.nv, transposed: false,
    groupSize: 32, zeroPoint: false};
  const options = p.decoder ?? {int4Half: true};
  const step = packedStep(l, {lhs: 'x', lhsRow: i => `${i}`, accumulate: (i, v) => `acc[${i}] += ${v};`},
                          {...options, decodeOnce: p.decodeOnce ?? true, preloaded: p.prefetch,
                           wholeSteps: p.unchecked});
  const words = (r: string) => Array.from({length: STREAM_WORD_ROWS}, (_, i) => `let c${i} = ${r}${i};`).join(' ');
  return `
  @group(0) @binding(0) var<storage, read> packed : array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read> scales : array<vec4<f32>>;
  @group(0) @binding(2) var<storage, read> x : array<vec4<f32>>;
  @group(0) @binding(3) var<storage, read_write> out : array<vec4<f32>>;
  ${wordDecoder(l, options).snippet}
  const TM = ${p.rows};
  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let lid = i32(li);
    let w = i32(wid.x);
    let expert = w / ${p.nv / p.nvw};
    let cl = lid % ${p.nvw};
    let s = lid / ${p.nvw};
    let KS = ${p.ks};
    let rows = TM;
    var acc = array<vec4<f32>, TM>();
    {${packedStepConsts(l, `${8 * p.wr}`)}
      let NV = ${p.nv};
      let K4 = ${2 * p.wr};
      let n = (w % ${p.nv / p.nvw}) * ${p.nvw} + cl;
      let wBase = expert * KW * NV + n;${p.prefetch ? `${packedWords('s * 4', 'wBase', 'nw')}
      for (var step = s; step < steps; step += KS) {
        ${words('nw')}${packedWords('(step + KS) * 4', 'wBase', 'nw', false)}${step}
      }` : `
      for (var step = s; step < steps; step += KS) {${step}
      }`}
    }
    var v = vec4<f32>(0.0);
    for (var i = 0; i < TM; i++) { v += acc[i]; }
    if (v.x == 1.2345e-30) { out[lid] = v; }
  }`;
}

function probeCode(p: Probe): string {
  if (p.rows != null) return mathCode(p);
  const tiles = p.nv / p.nvw;
  if (p.linear) {
    const chunk = p.wr * p.nv / tiles;
    return `
  @group(0) @binding(0) var<storage, read> w : array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read_write> out : array<u32>;
  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let base = (wid.x / ${tiles}u) * ${p.wr * p.nv}u + (wid.x % ${tiles}u) * ${chunk}u;
    var acc = vec4<u32>(0u);
    for (var i = li; i < ${chunk}u; i += 1024u) {
      let a = w[base + i];
      let b = w[base + min(i + 256u, ${chunk - 1}u)];
      let c = w[base + min(i + 512u, ${chunk - 1}u)];
      let d = w[base + min(i + 768u, ${chunk - 1}u)];
      acc ^= a ^ b ^ c ^ d;
    }
    if (acc.x == 0x9e3779b9u && acc.y == 7u) { out[li] = acc.z; }
  }`;
  }
  const steps = p.wr / p.wrs;
  const load = (st: string, v: string) => Array.from({length: p.wrs}, (_, r) =>
    `let ${v}${r} = w[base + (${st} * ${p.wrs}u + ${r}u) * ${p.nv}u];`).join('\n        ');
  const xor = (v: string) => Array.from({length: p.wrs}, (_, r) => `${v}${r}`).join(' ^ ');
  return `
  @group(0) @binding(0) var<storage, read> w : array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read_write> out : array<u32>;
  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let cl = li % ${p.nvw}u;
    let s = li / ${p.nvw}u;
    let base = (wid.x / ${p.nv / p.nvw}u) * ${p.wr * p.nv}u + (wid.x % ${p.nv / p.nvw}u) * ${p.nvw}u + cl;
    var acc = vec4<u32>(0u);${p.pair ? `
    for (var st = s; st < ${steps}u; st += ${2 * p.ks}u) {
      let st2 = min(st + ${p.ks}u, ${steps - 1}u);
        ${load('st', 'a')}
        ${load('st2', 'b')}
      acc ^= ${xor('a')};
      if (st + ${p.ks}u < ${steps}u) { acc ^= ${xor('b')}; }
    }` : `
    for (var st = s; st < ${steps}u; st += ${p.ks}u) {
        ${load('st', 'a')}
      acc ^= ${xor('a')};
    }`}
    if (acc.x == 0x9e3779b9u && acc.y == 7u) { out[li] = acc.z; }
  }`;
}

const UP = {wr: 256, nv: 384};
const DOWN = {wr: 96, nv: 512};
const PROBES: Record<string, Probe> = {
  'up 16x16 wrs4 (upGate today)': {...UP, nvw: 16, ks: 16, wrs: 4},
  'up 8x32 wrs4': {...UP, nvw: 8, ks: 32, wrs: 4},
  'up 32x8 wrs4': {...UP, nvw: 32, ks: 8, wrs: 4},
  'up 64x4 wrs4': {...UP, nvw: 64, ks: 4, wrs: 4},
  'up 128x2 wrs4': {...UP, nvw: 128, ks: 2, wrs: 4},
  'up 16x16 wrs8': {...UP, nvw: 16, ks: 16, wrs: 8},
  'up 32x8 wrs8': {...UP, nvw: 32, ks: 8, wrs: 8},
  'up 16x16 wrs4 pair': {...UP, nvw: 16, ks: 16, wrs: 4, pair: true},
  'up 32x8 wrs4 pair': {...UP, nvw: 32, ks: 8, wrs: 4, pair: true},
  'up 64x4 wrs4 pair': {...UP, nvw: 64, ks: 4, wrs: 4, pair: true},
  'up linear (24 chunks per expert)': {...UP, nvw: 16, ks: 16, wrs: 4, linear: true},
  'up linear (6 chunks per expert)': {...UP, nvw: 64, ks: 4, wrs: 4, linear: true},
  'down 8x32 wrs4 (per expert)': {...DOWN, nvw: 8, ks: 32, wrs: 4},
  'down 32x8 wrs4': {...DOWN, nvw: 32, ks: 8, wrs: 4},
  'down 64x4 wrs4': {...DOWN, nvw: 64, ks: 4, wrs: 4},
  'down 64x4 wrs4 pair': {...DOWN, nvw: 64, ks: 4, wrs: 4, pair: true},
  'down 128x2 wrs4': {...DOWN, nvw: 128, ks: 2, wrs: 4},
  'down linear (8 chunks per expert)': {...DOWN, nvw: 64, ks: 4, wrs: 4, linear: true},
  // Batch O: the real packed step (upGate's tile 16 x 16, int4 g32 with its scales).
  'up 16x16 step, 1 row': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1},
  'up 16x16 step, 2 rows': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2},
  'up 16x16 step, 4 rows': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 4},
  'up 16x16 step, 2 rows, exponent bits': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2, decoder: {exponentBits: true}},
  'up 16x16 step, 2 rows, conversion': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2, decoder: {}},
  'up 16x16 step, 2 rows, decoded per row': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2, decodeOnce: false},
  'up 32x8 step, 2 rows': {...UP, nvw: 32, ks: 8, wrs: 4, rows: 2},
  'up 8x32 step, 2 rows': {...UP, nvw: 8, ks: 32, wrs: 4, rows: 2},
  // Session 7: int4 codes as 1 + c / 16 (the zero point off the lhs sum per step), the next step's words prefetched.
  's7 up 16x16 step, 1 row (table)': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1},
  's7 up 16x16 step, 1 row, unit halves': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1, decoder: {int4Unit: 'half'}},
  's7 up 16x16 step, 1 row, unit bits': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1, decoder: {int4Unit: 'bits'}},
  's7 up 16x16 step, 1 row, prefetch': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1, prefetch: true},
  's7 up 16x16 step, 1 row, unit halves, prefetch': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1,
                                                     decoder: {int4Unit: 'half'}, prefetch: true},
  's7 up 16x16 step, 2 rows, unit halves, prefetch': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2,
                                                      decoder: {int4Unit: 'half'}, prefetch: true},
  's7b up 16x16 step, 1 row (table)': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1},
  's7b up 16x16 step, 1 row, unchecked': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1, unchecked: true},
  's7b up 16x16 step, 1 row, unit halves, unchecked': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 1, unchecked: true,
                                                      decoder: {int4Unit: 'half'}},
  's7b up 16x16 step, 2 rows (table)': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2},
  's7b up 16x16 step, 2 rows, unit halves, unchecked': {...UP, nvw: 16, ks: 16, wrs: 4, rows: 2, unchecked: true,
                                                       decoder: {int4Unit: 'half'}},
};

async function main(): Promise<void> {
  const {create, globals} = await import('webgpu');
  Object.assign(globalThis, globals);
  let gpu: any;
  try {
    gpu = create(['disable-dawn-features=timestamp_quantization']);
  } catch {
    gpu = create([]);
  }
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  // 81 upGate-sized experts (127 MB) fit WebGPU's default binding limit (128 MiB); SwiftShader aborted with raised limits.
  const device = await adapter.requestDevice({requiredFeatures: ['timestamp-query']});
  const results: Record<string, unknown> = {date: new Date().toISOString(), adapter: adapter.info?.description ??
    adapter.info?.device, active: ACTIVE, rows: {}};
  const rows = results.rows as Record<string, unknown>;
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // One buffer of ACTIVE upGate-sized experts (the largest); down rows read the first experts' bytes as their shape.
  const words = ACTIVE * UP.wr * UP.nv;
  // Filled while mapped at creation (SwiftShader's dry run crashed after queue.writeBuffer of a filled array).
  const buf = device.createBuffer({size: words * 16, usage: 0x80, mappedAtCreation: true});
  {
    const view = new Uint32Array(buf.getMappedRange());
    view.fill(Number(process.env.BENCH_FILL ?? 0x5a5a5a5a));
    buf.unmap();
  }
  const outBuf = device.createBuffer({size: 4096, usage: 0x80});
  // int4 g32 scales (one vec4 of f32 per group of 32 k and 4 columns: 1/8 of the codes' words) and 4 rows of x.
  const filled = (bytes: number, value: number) => {
    const b = device.createBuffer({size: bytes, usage: 0x80, mappedAtCreation: true});
    new Float32Array(b.getMappedRange()).fill(value);
    b.unmap();
    return b;
  };
  const scaleBuf = filled(words * 16 / 4, 0.01), xBuf = filled(4 * 8 * UP.wr * 4, 0.5);
  const only = process.env.BENCH_ONLY;  // a substring of the row names (local dry runs)
  for (const [name, p] of Object.entries(PROBES).filter(([n]) => only == null || n.includes(only))) {
    const pipe = device.createComputePipeline({layout: 'auto',
      compute: {module: device.createShaderModule({code: probeCode(p)}), entryPoint: 'main'}});
    const group = device.createBindGroup({layout: pipe.getBindGroupLayout(0), entries: p.rows == null ? [
      {binding: 0, resource: {buffer: buf}}, {binding: 1, resource: {buffer: outBuf}}] : [
      {binding: 0, resource: {buffer: buf}}, {binding: 1, resource: {buffer: scaleBuf}},
      {binding: 2, resource: {buffer: xBuf}}, {binding: 3, resource: {buffer: outBuf}}]});
    const wgs = ACTIVE * (p.nv / p.nvw);
    for (let i = 0; i < 3; i++) await timePassMs(device, pipe, group, 4, wgs);
    const ms: number[] = [];
    for (let r = 0; r < REPS; r++) ms.push(await timePassMs(device, pipe, group, 4, wgs) / 4);
    const bytes = ACTIVE * p.wr * p.nv * 16;
    rows[name] = {ms: median(ms), gbPerS: bytes / median(ms) / 1e6, bytes, workgroups: wgs};
    console.log(name, JSON.stringify(rows[name]));
    writeFileSync(`${outDir}/webgpu_stream_probe.json`, JSON.stringify(results, null, 1));
  }
}

main().then(() => process.exit(0), e => {
  console.error(e);
  process.exit(1);
});
