// A/B of wasm GEMM builds, interleaved: moe_gemm_swiglu (K 2048 -> 2 x 768) + moe_gemm (768 -> 2048), the
// full-width Qwen3-30B-A3B expert shapes, E experts x R rows each (BENCH_E, BENCH_R; default 16 x 16, the rows per
// expert of T = 256; BENCH_ROWS=13,16,19,... instead gives expert e the e-th count of that list, cycled: the uneven
// counts of real routing, whose rows past the last 4-row tile take the 1-3 row tiles), 1 thread, random codes / floats packed once per module; each round runs every module once in
// turn (so that the shared machine's load falls on all of them alike); prints the median and minimum process CPU
// ms per module and its largest difference from the first module's output (relative to its largest value).
// Modules: .wasm files compiled as scripts/build-wasm.mjs does (threads variant, either SIMD level), e.g. the
// source of two commits. Run: node --experimental-wasm-relaxed-simd bench/cpu_gemm_ab.mjs int8 9 a.wasm b.wasm
import {readFileSync} from 'fs';
const [format, roundsS, ...files] = process.argv.slice(2);
const E = Number(process.env.BENCH_E ?? 16), R = Number(process.env.BENCH_R ?? 16), H = 2048, I = 768, GROUP = 32;
const ROWS = process.env.BENCH_ROWS ? process.env.BENCH_ROWS.split(',').map(Number) : [R];
const rowsOf = e => ROWS[e % ROWS.length];
const f = {float32: 0, int8: 1, int4: 2}[format];
const cpuMs = c0 => { const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; };
const median = a => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
function setup(file) {
  const memory = new WebAssembly.Memory({initial: 256, maximum: 65536, shared: true});
  const x = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(file)), {env: {memory}}).exports;
  let top = Math.ceil(x.__heap_base.value / 64) * 64;
  const alloc = bytes => { const at = top; top += Math.ceil(bytes / 64) * 64;
    if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536)); return at; };
  let seed = 1; const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
  const pack = (k, n, halves) => {
    const dst = alloc(x.packed_expert_bytes(f, k, n, GROUP, halves)); const mark = top;
    if (f === 0) { const src = alloc(k * n * 4); new Float32Array(memory.buffer, src, k * n).forEach((_, i, a) => a[i] = rnd()); x.pack_expert(src, dst, k, n, 0, halves); }
    else { const words = k / (f === 1 ? 4 : 8) * n; const w = alloc(words * 4), s = alloc(k / GROUP * n * 4);
      new Int32Array(memory.buffer, w, words).forEach((_, i, a) => a[i] = (rnd() * 2 ** 32) | 0);
      new Float32Array(memory.buffer, s, k / GROUP * n).forEach((_, i, a) => a[i] = rnd() * 0.01);
      x.pack_expert_quantized(w, s, dst, f, k, n, GROUP, 0, halves); }
    top = mark; return dst; };
  const up = [], down = [];
  for (let e = 0; e < E; e++) { up.push(pack(H, 2 * I, 1)); down.push(pack(I, H, 0)); }
  const starts = [0];
  for (let e = 0; e < E; e++) starts.push(starts[e] + rowsOf(e));
  const rows = starts[E];
  const lhs = alloc(rows * H * 4), mid = alloc(rows * I * 4), out = alloc(rows * H * 4);
  new Float32Array(memory.buffer, lhs, rows * H).forEach((_, i, a) => a[i] = rnd());
  const offsets = alloc((E + 1) * 4); new Int32Array(memory.buffer, offsets, E + 1).forEach((_, e, a) => a[e] = starts[e]);
  const upAt = alloc(E * 4), downAt = alloc(E * 4);
  new Uint32Array(memory.buffer, upAt, E).set(up); new Uint32Array(memory.buffer, downAt, E).set(down);
  const scratch = alloc(x.scratch_floats_per_thread(H) * 4), work = alloc(64);
  const counter = new Int32Array(memory.buffer, work, 1);
  return {run() { counter[0] = 0; const c0 = process.cpuUsage();
      x.moe_gemm_swiglu(lhs, H, mid, I, offsets, E, upAt, 0, f, GROUP, 0, scratch, work, 0, 1);
      counter[0] = 0; x.moe_gemm(mid, I, out, H, offsets, E, downAt, 0, f, GROUP, scratch, work, 0, 1);
      return cpuMs(c0); },
    out: () => new Float32Array(memory.buffer, out, rows * H).slice(), macs: rows * 3 * H * I};
}
const vs = files.map(setup);
const times = files.map(() => []);
for (const v of vs) { v.run(); v.run(); }
for (let r = 0; r < Number(roundsS); r++) vs.forEach((v, i) => times[i].push(v.run()));
const ref = vs[0].out();
files.forEach((file, i) => { const o = vs[i].out(); let m = 0, d = 0; for (let j = 0; j < o.length; j++) { m = Math.max(m, Math.abs(ref[j])); d = Math.max(d, Math.abs(o[j] - ref[j])); }
  const ms = median(times[i]); console.log(file, format, 'R', process.env.BENCH_ROWS ?? R, 'ms', ms.toFixed(1), 'GMAC/s', (vs[i].macs / ms / 1e6).toFixed(2), 'min', Math.min(...times[i]).toFixed(1), 'diff/max', (d / m).toExponential(1)); });
