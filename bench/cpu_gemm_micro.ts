/**
 * The wasm expert GEMMs alone, against the core's floating-point roof: how close the tiles run to what 128-bit
 * SIMD can do on this CPU, per SIMD build (plain, relaxed) and weight format.
 *
 * - GEMMs: the shipped modules' moe_gemm_swiglu (K 2048 -> 2 x 768) and moe_gemm (768 -> 2048), the full-width
 *   Qwen3-30B-A3B expert shapes, E experts x R rows each (default 16 x 16: the rows per expert of a T = 256
 *   forward), 1 thread, weights packed once (random codes / floats), median of 5 calls after 2, process CPU ms.
 * - Roof: 8 independent accumulators, 8 multiply-adds per iteration as f32x4.relaxed_madd (FMA) and as a
 *   multiply plus an add, in a module assembled here (no compiler needed): the most multiply-adds per second a
 *   128-bit tile can reach on this core.
 *
 * Run: `node scripts/build.mjs && npx tsc -p tsconfig.spec.json && node --experimental-wasm-relaxed-simd
 * build/bench/cpu_gemm_micro.js` (BENCH_E, BENCH_R; without the flag Node 20 has only the plain build).
 * Prints one JSON line per measurement.
 */
import {plainThreadsWasmBase64, relaxedThreadsWasmBase64} from '../src/kernels/wasm/moe_kernels_wasm.js';

const E = Number(process.env.BENCH_E ?? 16), R = Number(process.env.BENCH_R ?? 16);
const H = 2048, I = 768, GROUP = 32;
const FORMATS = {float32: 0, int8: 1, int4: 2} as const;

interface Kernels {
  __heap_base: WebAssembly.Global;
  packed_expert_bytes(format: number, k: number, n: number, group: number, halves: number): number;
  scratch_floats_per_thread(k: number): number;
  pack_expert(src: number, dst: number, k: number, n: number, transposed: number, halves: number): void;
  pack_expert_quantized(words: number, scales: number, dst: number, format: number, k: number, n: number,
                        group: number, transposed: number, halves: number): void;
  moe_gemm(...args: number[]): void;
  moe_gemm_swiglu(...args: number[]): void;
}

/** Process CPU ms since c0 (the machine is shared: wall time would count the other users' work). */
const cpuMs = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};
const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];

function gemms(base64: string, format: keyof typeof FORMATS) {
  // The threads build as shipped; a shared memory (atomics need no second thread).
  const memory = new WebAssembly.Memory({initial: 256, maximum: 65536, shared: true});
  const x = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(Buffer.from(base64, 'base64'))), {env: {memory}})
      .exports as unknown as Kernels;
  let top = Math.ceil((x.__heap_base.value as number) / 64) * 64;
  const alloc = (bytes: number) => {
    const at = top;
    top += Math.ceil(bytes / 64) * 64;
    if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
    return at;
  };
  let seed = 1;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
  const f = FORMATS[format];
  const pack = (k: number, n: number, halves: number) => {
    const dst = alloc(x.packed_expert_bytes(f, k, n, GROUP, halves));
    const mark = top;
    if (f === 0) {
      const src = alloc(k * n * 4);
      new Float32Array(memory.buffer, src, k * n).forEach((_, i, a) => a[i] = rnd());
      x.pack_expert(src, dst, k, n, 0, halves);
    } else {
      const words = k / (f === 1 ? 4 : 8) * n;
      const w = alloc(words * 4), s = alloc(k / GROUP * n * 4);
      new Int32Array(memory.buffer, w, words).forEach((_, i, a) => a[i] = (rnd() * 2 ** 32) | 0);
      new Float32Array(memory.buffer, s, k / GROUP * n).forEach((_, i, a) => a[i] = rnd() * 0.01);
      x.pack_expert_quantized(w, s, dst, f, k, n, GROUP, 0, halves);
    }
    top = mark;
    return dst;
  };
  const up: number[] = [], down: number[] = [];
  for (let e = 0; e < E; e++) {
    up.push(pack(H, 2 * I, 1));
    down.push(pack(I, H, 0));
  }
  const rows = E * R;
  const lhs = alloc(rows * H * 4), mid = alloc(rows * I * 4), out = alloc(rows * H * 4);
  new Float32Array(memory.buffer, lhs, rows * H).forEach((_, i, a) => a[i] = rnd());
  const offsets = alloc((E + 1) * 4);
  new Int32Array(memory.buffer, offsets, E + 1).forEach((_, e, a) => a[e] = e * R);
  const upAt = alloc(E * 4), downAt = alloc(E * 4);
  new Uint32Array(memory.buffer, upAt, E).set(up);
  new Uint32Array(memory.buffer, downAt, E).set(down);
  const scratch = alloc(x.scratch_floats_per_thread(H) * 4), work = alloc(64);
  const counter = new Int32Array(memory.buffer, work, 1);
  const upMs: number[] = [], downMs: number[] = [];
  for (let it = 0; it < 7; it++) {
    counter[0] = 0;
    let c0 = process.cpuUsage();
    x.moe_gemm_swiglu(lhs, H, mid, I, offsets, E, upAt, 0, f, GROUP, 0, scratch, work, 0, 1);
    if (it >= 2) upMs.push(cpuMs(c0));
    counter[0] = 0;
    c0 = process.cpuUsage();
    x.moe_gemm(mid, I, out, H, offsets, E, downAt, 0, f, GROUP, scratch, work, 0, 1);
    if (it >= 2) downMs.push(cpuMs(c0));
  }
  const ms = median(upMs) + median(downMs);
  return {upMs: +median(upMs).toFixed(2), downMs: +median(downMs).toFixed(2),
    gmacPerS: +(rows * 3 * H * I / ms / 1e6).toFixed(2)};
}

/**
 * A module with one function (param i32 n) (result f32), n iterations of independent multiply-adds: fused, 8
 * accumulators acc = acc * b + b (FMA latency 4, so 8 chains keep 2 FMA pipes busy); not fused, 6 products
 * m = m * b feeding 6 sums s = s + m (6 chains of each at latency 3: 2 multiplies and 2 adds per cycle at most).
 */
function roofModule(fused: boolean): Uint8Array<ArrayBuffer> {
  const leb = (v: number) => v < 128 ? [v] : [(v & 127) | 128, v >> 7];
  const simd = (op: number) => [0xfd, ...leb(op)];
  const F32X4_ADD = 0xe4, F32X4_MUL = 0xe6, RELAXED_MADD = 0x105, F32X4_SPLAT = 0x13, EXTRACT = 0x1f;
  // locals: 0 = n (param), 1 = b, 2..13 = accumulators (v128)
  const chains = fused ? 8 : 12;
  const body: number[] = [];
  body.push(0x43, ...new Uint8Array(new Float32Array([0.999]).buffer), ...simd(F32X4_SPLAT), 0x21, 1);
  for (let a = 2; a < 2 + chains; a++) body.push(0x20, 1, 0x21, a);
  body.push(0x03, 0x40);  // loop
  for (let a = 2; a < 2 + (fused ? 8 : 6); a++) {
    if (fused) body.push(0x20, a, 0x20, 1, 0x20, 1, ...simd(RELAXED_MADD), 0x21, a);
    else body.push(0x20, a, 0x20, 1, ...simd(F32X4_MUL), 0x21, a, 0x20, a + 6, 0x20, a, ...simd(F32X4_ADD), 0x21, a + 6);
  }
  body.push(0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b);  // n -= 1; br_if n; end
  body.push(0x20, 2);
  for (let a = 3; a < 2 + chains; a++) body.push(0x20, a, ...simd(F32X4_ADD));
  body.push(...simd(EXTRACT), 0, 0x0b);
  const locals = [1, 1 + chains, 0x7b];
  const func = [...locals, ...body];
  const code = [1, ...leb(func.length), ...func];
  const exp = [1, 4, ...Buffer.from('roof'), 0, 0];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    1, 6, 1, 0x60, 1, 0x7f, 1, 0x7d, 3, 2, 1, 0, 7, exp.length, ...exp, 10, ...leb(code.length), ...code]);
}

function roof(fused: boolean): number | null {
  const bytes = roofModule(fused);
  if (!WebAssembly.validate(bytes)) return null;
  const run = (new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as {roof(n: number): number}).roof;
  run(1e6);
  const n = 5e7, times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    run(n);
    const c = process.cpuUsage(c0);
    times.push((c.user + c.system) / 1000);
  }
  return +(n * (fused ? 32 : 24) / median(times) / 1e6).toFixed(2);
}

const relaxedOk = WebAssembly.validate(roofModule(true));
console.log(JSON.stringify({roofGmacPerS: {fma: roof(true), mulAdd: roof(false)}, relaxedSimd: relaxedOk}));
for (const format of Object.keys(FORMATS) as Array<keyof typeof FORMATS>) {
  for (const [level, base64] of [['plain', plainThreadsWasmBase64], ['relaxed', relaxedThreadsWasmBase64]] as const) {
    if (level === 'relaxed' && !relaxedOk) continue;
    console.log(JSON.stringify({format, simd: level, experts: E, rowsPerExpert: R, ...gemms(base64, format)}));
  }
}
