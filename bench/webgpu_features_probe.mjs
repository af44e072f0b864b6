// Which adapter features dawn.node exposes (issue 15: shader-f16, subgroups, chromium-experimental-subgroup-matrix)
// under each set of Dawn toggles, the subgroup-matrix configurations when there are any, and, where the feature
// exists, a micro GEMM with subgroup matrices (f16 inputs, f32 accumulation; C = A B, 4096^3) checked against a
// float64 product on sampled outputs: its TFLOP/s is the ceiling a tensor-core tiled program could reach.
// Run: node bench/webgpu_features_probe.mjs [outDir]   (raw WebGPU, no tfjs; `webgpu` must resolve.)
// PROBE_GEMM=0: features, limits and configurations only (no micro GEMM).
import {create, globals} from 'webgpu';
import {mkdirSync, writeFileSync} from 'node:fs';

Object.assign(globalThis, globals);
const outDir = process.argv[2] ?? 'bench/results';
mkdirSync(outDir, {recursive: true});
const report = {date: new Date().toISOString(), probes: [], gemm: []};
const save = () => writeFileSync(`${outDir}/webgpu_features_probe.json`, JSON.stringify(report, null, 1));

const TOGGLES = [
  [],
  ['enable-dawn-features=allow_unsafe_apis'],
  ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'],
  ['enable-dawn-features=vulkan_enable_f16_on_nvidia'],
];

function plain(o) {
  const out = {};
  for (const k in o) {
    const v = o[k];
    if (typeof v === 'function') continue;
    out[k] = Array.isArray(v) || (v != null && typeof v === 'object' && typeof v[Symbol.iterator] === 'function') ?
        [...v].map(x => (x != null && typeof x === 'object' ? plain(x) : x)) : v != null && typeof v === 'object' ? plain(v) : v;
  }
  return out;
}

let best = null;
for (const opts of TOGGLES) {
  const probe = {opts};
  try {
    const gpu = create(opts);
    const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
    if (adapter == null) throw new Error('no adapter');
    probe.features = [...adapter.features].sort();
    probe.info = plain(adapter.info ?? {});
    probe.maxWorkgroupStorage = adapter.limits.maxComputeWorkgroupStorageSize;
    const limits = {};
    for (const k in adapter.limits) if (typeof adapter.limits[k] === 'number') limits[k] = adapter.limits[k];
    probe.limits = limits;
    const want = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'].filter(f => adapter.features.has(f));
    probe.requested = want;
    if (want.includes('chromium-experimental-subgroup-matrix') && want.includes('shader-f16') &&
        (best == null || best.want.length < want.length)) {
      best = {gpu, adapter, want, opts};
    }
  } catch (e) {
    probe.error = String(e?.message ?? e);
  }
  report.probes.push(probe);
  console.log(`probe ${JSON.stringify(probe.opts)}: ${probe.error ?? probe.features.join(' ')}`);
  console.log(`  info ${JSON.stringify(probe.info)}`);
  console.log(`  limits ${JSON.stringify(probe.limits)}`);
  save();
}

/** The micro GEMM: one subgroup per workgroup computes RT x CT result tiles of S x S straight from global memory. */
function gemmShader(S, RT, CT, f16Result) {
  const tiles = [];
  for (let i = 0; i < RT; i++) for (let j = 0; j < CT; j++) tiles.push([i, j]);
  const rt = `subgroup_matrix_result<f32, ${S}, ${S}>`;
  return `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A : array<f16>;
@group(0) @binding(1) var<storage, read> B : array<f16>;
@group(0) @binding(2) var<storage, read_write> C : array<f32>;
override M : u32;
override N : u32;
override K : u32;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg : vec3<u32>) {
  let n0 = wg.x * ${S * CT}u;
  let m0 = wg.y * ${S * RT}u;
  ${tiles.map(([i, j]) => `var acc${i}${j} = ${rt}();`).join('\n  ')}
  for (var k0 = 0u; k0 < K; k0 += ${S}u) {
    ${Array.from({length: RT}, (_, i) =>
      `let a${i} = subgroupMatrixLoad<subgroup_matrix_left<f16, ${S}, ${S}>>(&A, (m0 + ${i * S}u) * K + k0, false, K);`).join('\n    ')}
    ${Array.from({length: CT}, (_, j) =>
      `let b${j} = subgroupMatrixLoad<subgroup_matrix_right<f16, ${S}, ${S}>>(&B, k0 * N + n0 + ${j * S}u, false, N);`).join('\n    ')}
    ${tiles.map(([i, j]) => `acc${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc${i}${j});`).join('\n    ')}
  }
  ${tiles.map(([i, j]) => `subgroupMatrixStore(&C, (m0 + ${i * S}u) * N + n0 + ${j * S}u, acc${i}${j}, false, N);`).join('\n  ')}
}`;
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function halfBits(x) {
  // float32 -> float16 bits (round to nearest even), for values in the normal range used here.
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000, exp = ((u >>> 23) & 0xff) - 127 + 15, man = u & 0x7fffff;
  if (exp <= 0) return sign;
  let h = sign | (exp << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return h;
}
function halfValue(h) {
  const e = (h >> 10) & 0x1f, m = h & 0x3ff, s = h & 0x8000 ? -1 : 1;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

if (best != null && process.env.PROBE_GEMM !== '0') {
  const {adapter, want, opts} = best;
  console.log(`subgroup matrices with ${JSON.stringify(opts)}`);
  try {
    const device = await adapter.requestDevice({requiredFeatures: want,
      requiredLimits: {maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize}});
    const configs = plain(adapter.info ?? {}).subgroupMatrixConfigs ?? [];
    report.subgroupMatrixConfigs = configs;
    const sizes = [...new Set(configs.filter(c => c.M === c.N && c.N === c.K).map(c => c.M)), 16, 8].filter(
        (v, i, a) => a.indexOf(v) === i);
    const Mg = 4096, Ng = 4096, Kg = 4096;
    const a16 = new Uint16Array(Mg * Kg), b16 = new Uint16Array(Kg * Ng);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296) - 0.5;
    for (let i = 0; i < a16.length; i++) a16[i] = halfBits(rnd());
    for (let i = 0; i < b16.length; i++) b16[i] = halfBits(rnd());
    const buf = (data, usage) => {
      const b = device.createBuffer({size: data.byteLength, usage, mappedAtCreation: true});
      new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer));
      b.unmap();
      return b;
    };
    const S_ = GPUBufferUsage.STORAGE;
    const A = buf(a16, S_), B = buf(b16, S_);
    const C = device.createBuffer({size: Mg * Ng * 4, usage: S_ | GPUBufferUsage.COPY_SRC});
    const read = device.createBuffer({size: Mg * Ng * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    for (const S of sizes) {
      for (const [RT, CT] of [[1, 1], [2, 2], [2, 4], [4, 4]]) {
        const row = {S, RT, CT};
        try {
          device.pushErrorScope('validation');
          const module = device.createShaderModule({code: gemmShader(S, RT, CT)});
          const info = await module.getCompilationInfo();
          const errs = info.messages.filter(m => m.type === 'error').map(m => m.message);
          if (errs.length) throw new Error(`compile: ${errs.join('; ')}`);
          const pipeline = await device.createComputePipelineAsync({layout: 'auto',
            compute: {module, entryPoint: 'main', constants: {M: Mg, N: Ng, K: Kg}}});
          const bind = device.createBindGroup({layout: pipeline.getBindGroupLayout(0),
            entries: [A, B, C].map((b, i) => ({binding: i, resource: {buffer: b}}))});
          const run = (reps) => {
            const enc = device.createCommandEncoder();
            for (let r = 0; r < reps; r++) {
              const pass = enc.beginComputePass();
              pass.setPipeline(pipeline);
              pass.setBindGroup(0, bind);
              pass.dispatchWorkgroups(Ng / (S * CT), Mg / (S * RT));
              pass.end();
            }
            device.queue.submit([enc.finish()]);
            return device.queue.onSubmittedWorkDone();
          };
          await run(1);
          const err = await device.popErrorScope();
          if (err) throw new Error(`validation: ${err.message}`);
          const times = [];
          for (let r = 0; r < 3; r++) {
            const t0 = performance.now();
            await run(5);
            times.push((performance.now() - t0) / 5);
          }
          times.sort((x, y) => x - y);
          row.ms = times[1];
          row.tflops = 2 * Mg * Ng * Kg / row.ms / 1e9;
          // Sampled outputs against float64 products of the same halves.
          const enc = device.createCommandEncoder();
          enc.copyBufferToBuffer(C, 0, read, 0, Mg * Ng * 4);
          device.queue.submit([enc.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const c = new Float32Array(read.getMappedRange().slice(0));
          read.unmap();
          let num = 0, den = 0;
          for (let s = 0; s < 256; s++) {
            const i = (s * 2654435761 >>> 0) % Mg, j = (s * 40503 + 7) % Ng;
            let want = 0;
            for (let k = 0; k < Kg; k++) want += halfValue(a16[i * Kg + k]) * halfValue(b16[k * Ng + j]);
            num += (c[i * Ng + j] - want) ** 2;
            den += want ** 2;
          }
          row.relErrVsHalvesF64 = Math.sqrt(num / den);
        } catch (e) {
          row.error = String(e?.message ?? e).slice(0, 600);
          try { await device.popErrorScope(); } catch { /* scope already popped */ }
        }
        console.log(`gemm ${JSON.stringify(row)}`);
        report.gemm.push(row);
        save();
      }
    }
  } catch (e) {
    report.deviceError = String(e?.message ?? e);
    console.log(`device: ${report.deviceError}`);
  }
} else {
  console.log('no adapter exposes shader-f16 + chromium-experimental-subgroup-matrix under these toggles');
}
save();
process.exit(0);
