// Issue 15 experiment: the expert GEMMs of one Qwen3-30B-A3B layer with subgroup matrices (Dawn's
// chromium-experimental-subgroup-matrix = Vulkan cooperative matrices = tensor cores) instead of f32 FMAs, from
// int4 g32 packed weights [E, K/8, N] (the layout of docs/formats.md) and f32 activations. Per K step of one group
// (32) a workgroup of 4 subgroups stages its activation tile as f16 and decodes its weight tile to f16
// (s * (c - 8), rounded once) in workgroup memory, then each subgroup multiplies its column slice with f32
// accumulation. Every expert gets the same number of rows (R = 16 ~ T = 256, R = 256 ~ T = 4096). Reported: ms,
// TFLOP/s, and the relative L2 error of sampled outputs against float64 on the exact dequantized weights and f32
// activations (what our exact path is held to), so the f16 staging's cost in accuracy is visible.
// Run: node bench/webgpu_subgroup_matrix_gemm.mjs [outDir]   (raw WebGPU; needs the feature, else it says so.)
import {create, globals} from 'webgpu';
import {mkdirSync, writeFileSync} from 'node:fs';

Object.assign(globalThis, globals);
const outDir = process.argv[2] ?? 'bench/results';
mkdirSync(outDir, {recursive: true});
const report = {date: new Date().toISOString(), rows: [], steps: []};
const t0 = performance.now();
// Batch E crashed this script (std::system_error) before its first row: every step is logged as it starts.
const step = what => {
  const line = `step ${((performance.now() - t0) / 1e3).toFixed(2)} s ${what}`;
  console.log(line);
  report.steps.push(line);
};
const save = () => writeFileSync(`${outDir}/webgpu_subgroup_matrix_gemm.json`, JSON.stringify(report, null, 1));

const gpu = create([process.env.SGM_TOGGLES ?? 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
const need = ['shader-f16', 'chromium-experimental-subgroup-matrix'];
if (adapter == null || !need.every(f => adapter.features.has(f))) {
  report.unavailable = adapter == null ? 'no adapter' : `missing ${need.filter(f => !adapter.features.has(f))}`;
  console.log(`subgroup-matrix gemm: ${report.unavailable}`);
  save();
  process.exit(0);
}
const configs = [...(adapter.info.subgroupMatrixConfigs ?? [])].map(c => ({
  componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K}));
report.configs = configs;
console.log(`configs ${JSON.stringify(configs)}`);
const pick = configs.find(c => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === c.N && c.N === c.K) ??
    configs.find(c => c.componentType === 'f16' && c.resultComponentType === 'f32');
if (pick == null) {
  report.unavailable = 'no f16 x f16 -> f32 configuration';
  console.log(report.unavailable);
  save();
  process.exit(0);
}
report.config = pick;
step('requestDevice');
const device = await adapter.requestDevice({requiredFeatures: need.concat(adapter.features.has('subgroups') ? ['subgroups'] : []),
  requiredLimits: {maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
                   maxBufferSize: adapter.limits.maxBufferSize,
                   maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize}});

/** WGSL: TM x TN tile per workgroup, 4 subgroups of 32 each own TN/4 columns. */
function shader(TM, TN, {M, N: SN, K: SK}, R, K, N) {
  const TK = 32, cols = TN / 4;
  const rt = TM / M, ct = cols / SN;
  const tiles = [];
  for (let i = 0; i < rt; i++) for (let j = 0; j < ct; j++) tiles.push([i, j]);
  const left = `subgroup_matrix_left<f16, ${SK}, ${M}>`, right = `subgroup_matrix_right<f16, ${SN}, ${SK}>`;
  const res = `subgroup_matrix_result<f32, ${SN}, ${M}>`;
  return `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A : array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> W : array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> S : array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> C : array<f32>;
const R = ${R}u;
const K = ${K}u;
const N = ${N}u;
const TM = ${TM}u;
const TN = ${TN}u;
const TK = ${TK}u;
var<workgroup> As : array<f16, ${TM * TK}>;
var<workgroup> Bs : array<f16, ${TK * TN}>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let colTiles = N / TN;
  let rowTiles = R / TM;
  let t = wg.x + wg.y * 32768u;
  let ct = t % colTiles;
  let rtile = (t / colTiles) % rowTiles;
  let e = t / (colTiles * rowTiles);
  let row0 = e * R + rtile * TM;
  let col0 = ct * TN;
  let sgCol = (lid / 32u) * ${cols}u;
  ${tiles.map(([i, j]) => `var acc${i}_${j} = ${res}();`).join('\n  ')}
  for (var k0 = 0u; k0 < K; k0 += TK) {
    for (var idx = lid; idx < TM * TK / 4u; idx += 128u) {
      let m = idx / (TK / 4u);
      let kq = idx % (TK / 4u);
      let v = A[((row0 + m) * K + k0) / 4u + kq];
      let o = m * TK + kq * 4u;
      As[o] = f16(v.x);
      As[o + 1u] = f16(v.y);
      As[o + 2u] = f16(v.z);
      As[o + 3u] = f16(v.w);
    }
    for (var idx = lid; idx < (TK / 8u) * (TN / 4u); idx += 128u) {
      let kw = idx / (TN / 4u);
      let c4 = idx % (TN / 4u);
      let w = W[(e * (K / 8u) + k0 / 8u + kw) * (N / 4u) + col0 / 4u + c4];
      let s = S[(e * (K / 32u) + k0 / 32u) * (N / 4u) + col0 / 4u + c4];
      for (var j = 0u; j < 8u; j++) {
        let c = vec4<f32>((w >> vec4<u32>(4u * j)) & vec4<u32>(15u)) - vec4<f32>(8.0);
        let d = vec4<f16>(s * c);
        let o = (kw * 8u + j) * TN + c4 * 4u;
        Bs[o] = d.x;
        Bs[o + 1u] = d.y;
        Bs[o + 2u] = d.z;
        Bs[o + 3u] = d.w;
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk += ${SK}u) {
      ${Array.from({length: rt}, (_, i) =>
        `let a${i} = subgroupMatrixLoad<${left}>(&As, ${i * M}u * TK + kk, false, TK);`).join('\n      ')}
      ${Array.from({length: ct}, (_, j) =>
        `let b${j} = subgroupMatrixLoad<${right}>(&Bs, kk * TN + sgCol + ${j * SN}u, false, TN);`).join('\n      ')}
      ${tiles.map(([i, j]) => `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc${i}_${j});`).join('\n      ')}
    }
    workgroupBarrier();
  }
  ${tiles.map(([i, j]) =>
    `subgroupMatrixStore(&C, (row0 + ${i * M}u) * N + col0 + sgCol + ${j * SN}u, acc${i}_${j}, false, N);`).join('\n  ')}
}`;
}

let seed = 0x12345678;
const word = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0; };
function storage(data) {
  const b = device.createBuffer({size: data.byteLength, usage: GPUBufferUsage.STORAGE, mappedAtCreation: true});
  new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  b.unmap();
  return b;
}

step('device ready');
device.addEventListener?.('uncapturederror', e => step(`uncaptured: ${e.error?.message}`));
// A small problem first (E 4, K 256, N 256), then the layer's two GEMMs at 16 and 256 rows per expert.
const PROBLEMS = [[4, 16, 256, 256], [128, 16, 2048, 1536], [128, 16, 768, 2048], [128, 256, 2048, 1536],
  [128, 256, 768, 2048]];
for (const [E, R, K, N] of PROBLEMS) {
  {
    const rows = E * R;
    step(`data E ${E} R ${R} K ${K} N ${N}`);
    const a = new Float32Array(rows * K);
    for (let i = 0; i < a.length; i++) a[i] = (word() / 4294967296 - 0.5) * 3.4;
    const w = new Uint32Array(E * (K / 8) * N);
    for (let i = 0; i < w.length; i++) w[i] = word();
    const s = new Float32Array(E * (K / 32) * N);
    for (let i = 0; i < s.length; i++) s[i] = 0.005 * (0.75 + 0.5 * word() / 4294967296);
    const A = storage(a), Wb = storage(w), Sb = storage(s);
    const C = device.createBuffer({size: rows * N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC});
    const read = device.createBuffer({size: rows * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    for (const TM of [16, 32, 64].filter(t => t <= R && (E > 4 || t === 16))) {
      const row = {E, R, K, N, TM, TN: 128, config: pick};
      try {
        device.pushErrorScope('validation');
        step(`module TM ${TM}`);
        const module = device.createShaderModule({code: shader(TM, 128, pick, R, K, N)});
        step('compilation info');
        const info = await module.getCompilationInfo();
        const errs = info.messages.filter(m => m.type === 'error').map(m => `${m.lineNum}:${m.linePos} ${m.message}`);
        if (errs.length) throw new Error(`compile: ${errs.join('; ')}`);
        step(`pipeline (${info.messages.length} messages)`);
        const pipeline = device.createComputePipeline({layout: 'auto',
          compute: {module, entryPoint: 'main'}});
        step('run');
        const bind = device.createBindGroup({layout: pipeline.getBindGroupLayout(0),
          entries: [A, Wb, Sb, C].map((b, i) => ({binding: i, resource: {buffer: b}}))});
        const groups = E * (R / TM) * (N / 128);
        const runs = async reps => {
          const enc = device.createCommandEncoder();
          for (let r = 0; r < reps; r++) {
            const pass = enc.beginComputePass();
            pass.setPipeline(pipeline);
            pass.setBindGroup(0, bind);
            pass.dispatchWorkgroups(Math.min(groups, 32768), Math.ceil(groups / 32768));
            pass.end();
          }
          device.queue.submit([enc.finish()]);
          await device.queue.onSubmittedWorkDone();
        };
        await runs(1);
        const err = await device.popErrorScope();
        if (err) throw new Error(`validation: ${err.message}`);
        const times = [];
        for (let r = 0; r < 3; r++) {
          const t0 = performance.now();
          await runs(10);
          times.push((performance.now() - t0) / 10);
        }
        times.sort((x, y) => x - y);
        row.ms = times[1];
        row.tflops = 2 * rows * K * N / row.ms / 1e9;
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(C, 0, read, 0, rows * N * 4);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const c = new Float32Array(read.getMappedRange().slice(0));
        read.unmap();
        let num = 0, den = 0;
        for (let q = 0; q < 128; q++) {
          const r = (q * 2654435761 >>> 0) % rows, n = (q * 40503 + 11) % N, e = Math.floor(r / R);
          let want = 0;
          for (let k = 0; k < K; k++) {
            const code = (w[(e * (K / 8) + (k >> 3)) * N + n] >>> (4 * (k & 7))) & 15;
            want += a[r * K + k] * (s[(e * (K / 32) + (k >> 5)) * N + n] * (code - 8));
          }
          num += (c[r * N + n] - want) ** 2;
          den += want ** 2;
        }
        row.relErr = Math.sqrt(num / den);
      } catch (e) {
        row.error = String(e?.message ?? e).slice(0, 900);
        try { await device.popErrorScope(); } catch { /* already popped */ }
      }
      console.log(`sgm ${JSON.stringify(row)}`);
      report.rows.push(row);
      save();
    }
    for (const b of [A, Wb, Sb, C, read]) b.destroy();
  }
}
save();
process.exit(0);
