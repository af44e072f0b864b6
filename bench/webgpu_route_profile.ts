/**
 * Where the decode path's route program (one workgroup: partial-logit sums, softmax, top-k, counting sort) spends
 * its time on a real GPU (issue 15: at T = 16 it takes ~0.03 ms whatever its algorithm). The program's WGSL comes
 * from routeCode itself; each variant changes one shape or tile parameter (splits to sum, K rounds, threads, lanes,
 * top-k method, load pattern), so the difference between two rows is that part's cost. Raw WebGPU device (dawn.node),
 * no tfjs: timestamp queries around one pass holding 1 dispatch (alone: carries the pass overhead) and 8 dependent
 * dispatches (each reads `work` and writes `route`, so they serialize: the in-stream cost per dispatch), medians of
 * 15; an empty 1-workgroup program and a 1-workgroup program declaring 16 KB of workgroup arrays as baselines.
 * Outputs are not checked here (the route program's specs do that); the work buffer holds random logits.
 *
 * Run (GPU machine): node webgpu_route_profile.mjs; writes $OUT/webgpu_route_profile.json.
 */
import {writeFileSync} from 'fs';

import {DecodeShape, DecodeTiles, decodeLayout, routeCode} from '../src/kernels/webgpu/decode/decode_programs.js';

import {timePassMs} from './webgpu_pass_timing.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const outDir = process.env.OUT ?? 'bench/results';
const REPS = Number(process.env.BENCH_REPS ?? 15);

const QWEN: DecodeShape = {T: 16, H: 2048, E: 128, K: 8, I: 768, S: 0, sharedGate: false, method: 'softmax',
  hasCorrectionBias: false, renormalize: true, nGroup: 1, topkGroup: 1, routedScalingFactor: 1, withBias: false,
  probInAdvance: false, upPacked: null, downPacked: null};
// decode_tuning.ts's T = 16 row for 4- and 8-bit codes (the route's fields), and its T = 1 row.
const T16: DecodeTiles = {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 2, routerPartials: 32768, routeLanes: 256,
  routeTopk: 'rounds'};
const T1: DecodeTiles = {...T16, upRows: 16, routerPartials: 2048, routeLoads: 'spread', routerUnroll: 8};

// Session 6: the top-k's candidates in registers ('keys'), the lane reductions by subgroup shuffles (SG: the
// adapter's subgroup size, set in main; 0 without the feature), the mask placement.
const KSM: DecodeTiles = {...T16, routeTopk: 'keys', routeSubgroups: true, routePlace: 'mask'};
const SG = {subgroupSize: 0};
const VARIANTS: Record<string, [DecodeShape, DecodeTiles]> = {
  't16_table (16 splits, loop loads)': [QWEN, T16],
  't16_keys_sg_mask': [QWEN, KSM],
  't16_keys': [QWEN, {...T16, routeTopk: 'keys'}],
  't16_keys_sg': [QWEN, {...T16, routeTopk: 'keys', routeSubgroups: true}],
  't16_mask': [QWEN, {...T16, routePlace: 'mask'}],
  't16_rounds_sg_mask': [QWEN, {...T16, routeSubgroups: true, routePlace: 'mask'}],
  't16_keys_sg_mask_k1': [{...QWEN, K: 1}, KSM],
  't16_keys_sg_mask_k4': [{...QWEN, K: 4}, KSM],
  't16_keys_sg_mask_splits1': [QWEN, {...KSM, routerPartials: 2048}],
  't16_keys_sg_mask_splits32_spread': [QWEN, {...KSM, routerPartials: 65536, routeLoads: 'spread'}],
  't16_keys_sg_mask_spread': [QWEN, {...KSM, routeLoads: 'spread'}],
  't1_keys_sg_mask': [{...QWEN, T: 1}, {...T1, routeTopk: 'keys', routeSubgroups: true, routePlace: 'mask'}],
  't16_splits1': [QWEN, {...T16, routerPartials: 2048}],
  't16_splits32_spread': [QWEN, {...T16, routerPartials: 65536, routeLoads: 'spread'}],
  't16_spread': [QWEN, {...T16, routeLoads: 'spread'}],
  't16_k1': [{...QWEN, K: 1}, T16],
  't16_k4': [{...QWEN, K: 4}, T16],
  't1_table': [{...QWEN, T: 1}, T1],
  't1_k1': [{...QWEN, T: 1, K: 1}, T1],
};

/**
 * The route program cut short before one of its stages (the stage's comment in routeCode marks the cut), with
 * every thread storing a value of the last stage's workgroup array so the stages before stay live: the
 * difference between consecutive cuts is that stage's cost. [marker, probe] per cut.
 */
const CUTS: Array<[string, string, string]> = [
  ['sums', 'for (var e = lid; e < E; e += NT) { atomicStore', 'prob[min(lid, T * E - 1)]'],
  ['sums+softmax', '// Top-k: k rounds', 'prob[min(lid, T * E - 1)] + sel[min(lid, T * E - 1)]'],
  ['sums+softmax+topk', 'workgroupBarrier();\n    for (var f = lid; f < T * K; f += NT) {\n      let t = f / K;',
   'chosenP[min(lid, T * K - 1)] + f32(chosenE[min(lid, T * K - 1)])'],
  ['sums+softmax+topk+weights+scan', '// Stable placement', 'f32(offs[min(lid, E - 1)])'],
];

function cutRoute(code: string, marker: string, probe: string): string {
  const at = code.indexOf(marker);
  if (at < 0) throw new Error(`route profile: marker ${JSON.stringify(marker)} not in routeCode's WGSL`);
  return `${code.slice(0, at)}
    route[lid % 32] = bitcast<i32>(${probe});
  }`;
}

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
  const subgroups = process.env.BENCH_FEATURES !== '' && adapter.features.has('subgroups');
  SG.subgroupSize = subgroups ? adapter.info.subgroupMinSize : 0;
  const device = await adapter.requestDevice({requiredFeatures: ['timestamp-query', ...(subgroups ? ['subgroups'] : [])],
    requiredLimits: {maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize}});
  const results: Record<string, unknown> = {date: new Date().toISOString(), adapter: adapter.info?.description ??
    adapter.info?.device, subgroupSize: SG.subgroupSize, rows: {}};
  const rows = results.rows as Record<string, unknown>;

  const timePass = (pipe: any, group: any, n: number) => timePassMs(device, pipe, group, n);
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const measure = async (pipe: any, group: any) => {
    for (let i = 0; i < 3; i++) await timePass(pipe, group, 8);
    const one: number[] = [], eight: number[] = [];
    for (let r = 0; r < REPS; r++) {
      one.push(await timePass(pipe, group, 1));
      eight.push(await timePass(pipe, group, 8));
    }
    return {aloneMs: median(one), perDispatchOf8Ms: median(eight) / 8};
  };
  const make = (code: string) => device.createComputePipeline({layout: 'auto',
    compute: {module: device.createShaderModule({code}), entryPoint: 'main'}});

  // Keep the clocks up (an idle H200 lowers them): ~0.5 s of a wide busy program first.
  const busy = make(`@group(0) @binding(0) var<storage, read_write> b : array<f32>;
    @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g : vec3<u32>) {
      var v = b[g.x % 1024u]; for (var i = 0; i < 4096; i++) { v = v * 1.0000001 + 1e-7; } b[g.x % 1024u] = v; }`);
  const busyBuf = device.createBuffer({size: 4096, usage: 0x80});
  const busyGroup = device.createBindGroup({layout: busy.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer: busyBuf}}]});
  const t0 = performance.now();
  while (performance.now() - t0 < 500) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(busy);
    pass.setBindGroup(0, busyGroup);
    for (let i = 0; i < 20; i++) pass.dispatchWorkgroups(1024);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  }

  const empty = make('@compute @workgroup_size(256) fn main() {}');
  rows['empty 1 workgroup'] = await measure(empty, null);
  const zeroInit = make(`var<workgroup> a : array<f32, 2048>; var<workgroup> b : array<f32, 2048>;
    @group(0) @binding(0) var<storage, read_write> o : array<f32>;
    @compute @workgroup_size(256) fn main(@builtin(local_invocation_index) i : u32) {
      a[i] = f32(i); workgroupBarrier(); b[i] = a[255u - i]; workgroupBarrier(); if (i == 0u) { o[0] = b[7] + o[0]; } }`);
  const zbuf = device.createBuffer({size: 64, usage: 0x80});
  rows['16 KB workgroup arrays, 2 barriers'] = await measure(zeroInit,
    device.createBindGroup({layout: zeroInit.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer: zbuf}}]}));
  const barriers = make(`var<workgroup> a : array<f32, 256>;
    @group(0) @binding(0) var<storage, read_write> o : array<f32>;
    @compute @workgroup_size(256) fn main(@builtin(local_invocation_index) i : u32) {
      var v = f32(i);
      for (var r = 0; r < 64; r++) { a[i] = v; workgroupBarrier(); v = v + a[(i + 1u) % 256u]; workgroupBarrier(); }
      if (i == 0u) { o[0] = v + o[0]; } }`);
  rows['128 barriers'] = await measure(barriers,
    device.createBindGroup({layout: barriers.getBindGroupLayout(0), entries: [{binding: 0, resource: {buffer: zbuf}}]}));
  console.log(JSON.stringify(rows));

  const programs: Array<[string, DecodeShape, DecodeTiles, string]> = [];
  for (const [name, [s0, t]] of Object.entries(VARIANTS)) {
    const s = {...s0, ...SG};
    programs.push([name, s, t, routeCode(s, t)]);
  }
  for (const [shape, [s0, t]] of [['t16', VARIANTS['t16_table (16 splits, loop loads)']], ['t16ksm', VARIANTS.t16_keys_sg_mask]] as const) {
    const s = {...s0, ...SG};
    for (const [cut, marker, probe] of CUTS) programs.push([`${shape} cut: ${cut}`, s, t, cutRoute(routeCode(s, t), marker, probe)]);
  }
  const only = process.env.BENCH_ONLY;  // a substring of the row names (local dry runs)
  for (const [name, s, t, code] of programs.filter(p => only == null || p[0].includes(only))) {
    const l = decodeLayout(s, t);
    const work = device.createBuffer({size: 4 * (l.workSize + 16), usage: 0x80 | 0x08});
    const logits = new Float32Array(l.workSize + 16);
    for (let i = 0; i < logits.length; i++) logits[i] = Math.random() * 2 - 1;
    device.queue.writeBuffer(work, 0, logits);
    const route = device.createBuffer({size: 4 * (l.routeSize + 64), usage: 0x80});
    const pipe = make(code);
    const group = device.createBindGroup({layout: pipe.getBindGroupLayout(0), entries: [
      {binding: 0, resource: {buffer: work}}, {binding: 1, resource: {buffer: route}}]});
    rows[name] = await measure(pipe, group);
    console.log(name, JSON.stringify(rows[name]));
    writeFileSync(`${outDir}/webgpu_route_profile.json`, JSON.stringify(results, null, 1));
    // Not destroyed: a few small buffers for the process's life (SwiftShader dry runs crashed destroying them).
  }
  writeFileSync(`${outDir}/webgpu_route_profile.json`, JSON.stringify(results, null, 1));
}

main().then(() => process.exit(0), e => {
  console.error(e);
  process.exit(1);
});
