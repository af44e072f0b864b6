// The half-matrix (subgroup-matrix) grouped GEMM program on SwiftShader, which has no subgroup matrices: its
// three matrix builtins are replaced, in the generated WGSL, by an emulation in which each of a subgroup's 32
// invocations computes 8 of a 16 x 16 tile's elements from the same workgroup tiles (f16 read as f32). Everything
// else is the program as generated: the staged loads and the packed decode into As / Bs, the subgroups' column
// split, the result tile Cs and the epilogues (bias, SwiGLU x row scale, rows in no segment, an empty expert, a
// partial K step and partial column tiles), checked against a float64 reference. The builtins themselves and the
// f16 rounding run on the H200 only (bench/webgpu_formats_bench.ts BENCH_HALF_MATRICES: difference vs exact).
import * as tf from '@tensorflow/tfjs-core';
import * as internal from 'tfjs-moe/internal';

import {recordError, rng} from '../helpers/util.js';
import {describeWebGPU} from './webgpu_env.js';

/**
 * The generated WGSL with the subgroup-matrix builtins emulated per invocation (see the file comment); sn: the
 * matrices' N (16, or 8 for the 16 x 8 x 16 shape), each invocation holding sn / 2 of a result's 16 x sn elements.
 */
function emulate(code: string, sn = 16): string {
  const per = sn / 2;
  return code.replace(/^\s*(enable (f16|subgroups|chromium_experimental_subgroup_matrix)|diagnostic\([^)]*\));\s*$/gm, '')
      .replace(/\bf16\b/g, 'f32')
      // The half helpers (HALF_PAIR_SNIPPET): f32 needs no rounding, and a word's halves are read as f32.
      .replace(/bitcast<vec2<f32>>\(pack2x16float\(v\)\)/, 'v')
      .replace(/bitcast<vec2<f32>>\(u\)/, 'unpack2x16float(u)')
      .replace(/subgroupAdd\(1u\) == 32u/, 'true')
      .replace(new RegExp(`var (acc\\d+_\\d+) = subgroup_matrix_result<f32, ${sn}, 16>\\(\\);`, 'g'),
               `var $1 : array<f32, ${per}>;`)
      .replace(/let (\w+) = subgroupMatrixLoad<subgroup_matrix_\w+<f32, \d+, \d+>>\(&\w+, ([^;]*), false, u32\(\w+\)\);/g,
               'let $1 = $2;')
      .replace(/(acc\d+_\d+) = subgroupMatrixMultiplyAccumulate\((\w+), (\w+), \w+\);/g,
               `for (var t = 0u; t < ${per}u; t++) {
                 let e = (u32(lid) % 32u) * ${per}u + t;
                 var s = 0.0;
                 for (var q = 0u; q < 16u; q++) { s += As[$2 + (e / ${sn}u) * u32(SA) + q] * Bs[$3 + q * u32(SB) + e % ${sn}u]; }
                 $1[t] += s;
               }`)
      .replace(/subgroupMatrixStore\(&Cs, ([^;]*), (acc\d+_\d+), false, u32\((\w+)\)\);/g,
               `for (var t = 0u; t < ${per}u; t++) {
                 let e = (u32(lid) % 32u) * ${per}u + t;
                 Cs[$1 + (e / ${sn}u) * u32($3) + e % ${sn}u] = $2[t];
               }`);
}

interface Backend {
  runWebGPUProgram(p: unknown, inputs: tf.TensorInfo[], dtype: string, uniforms: unknown[]): tf.TensorInfo;
  read(dataId: object): Promise<Float32Array>;
  disposeData(dataId: object): void;
}

describeWebGPU('webgpu half-matrix GEMM program (subgroup matrices emulated)', () => {
  // SwiftShader allows 32 KiB of workgroup memory and the emulation holds the f16 tiles as f32: tiles that fit.
  // subgroups 4: the tiles staged by 128 invocations, each subgroup multiplying the whole tile (split false) or
  // its quarter of the columns (split true).
  // pad / hd (session 4): padded row strides and the f16 decode of symmetric int4 and float16 words.
  const cases: Array<{format: 'float32' | 'int4' | 'float16' | 'int8' | 'bfloat16', swiglu: boolean, tm: number, tn: number,
                      subgroups: 1 | 4 | 8, split: boolean, rowGroups?: 1 | 2, pad?: boolean, hd?: boolean,
                      epilogue?: 'subgroup' | 'serial', prefetch?: false, lhsKFast?: true, depth?: 2, buffers?: 2,
                      sn?: 8, rowSkip?: true, offsets?: number[], wholeSteps?: true, depth_?: number, tk?: 64}> = [
    {format: 'int4', swiglu: false, tm: 16, tn: 128, subgroups: 1, split: false},
    {format: 'int4', swiglu: true, tm: 32, tn: 64, subgroups: 4, split: false},
    {format: 'float32', swiglu: false, tm: 32, tn: 64, subgroups: 1, split: false},
    {format: 'float32', swiglu: true, tm: 16, tn: 128, subgroups: 4, split: true},
    {format: 'int4', swiglu: true, tm: 16, tn: 128, subgroups: 4, split: true, pad: true, hd: true},
    {format: 'float16', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true},
    {format: 'int4', swiglu: true, tm: 32, tn: 64, subgroups: 8, split: true, rowGroups: 2, pad: true, hd: true,
      prefetch: false},
    // Each subgroup writes its own results (its column block: gate then up columns with SwiGLU).
    {format: 'int4', swiglu: true, tm: 32, tn: 64, subgroups: 8, split: true, rowGroups: 2, pad: true, hd: true,
      epilogue: 'subgroup', lhsKFast: true},
    {format: 'float32', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, rowGroups: 2, epilogue: 'subgroup'},
    {format: 'int8', swiglu: false, tm: 16, tn: 128, subgroups: 4, split: true, pad: true, hd: true},
    // Loads 2 steps ahead, the float16 table row (K = 72: 3 steps, so the last round runs one stage of two).
    {format: 'float16', swiglu: true, tm: 16, tn: 128, subgroups: 4, split: true, pad: true, hd: true, depth: 2},
    // Session 7: double-buffered tiles (one barrier per step), and the 16 x 8 x 16 matrices.
    // (64 columns: the doubled tiles, held as f32 here, fit SwiftShader's 32 KiB.)
    {format: 'int4', swiglu: true, tm: 16, tn: 64, subgroups: 4, split: true, pad: true, hd: true, buffers: 2},
    {format: 'float16', swiglu: false, tm: 16, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'subgroup', lhsKFast: true, buffers: 2, sn: 8},
    // Empty row matrices skipped: expert 0's 9 rows leave the second row matrix of its 32-row tile empty; the
    // subgroups write their results in turn through one scratch.
    {format: 'int4', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, offsets: [3, 12, 12, 37]},
    // The table's kind at 16 rows per expert; K = 64, two whole TK steps: decoded rows stored without k < K selects.
    {format: 'int4', swiglu: true, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'subgroup', rowSkip: true, wholeSteps: true, depth_: 64, offsets: [3, 12, 12, 37]},
    // Session 8: the serial epilogue with the lhs tile read k first (the m32x128s4srul kind), here at TK = 64
    // (two groups of 32 per step, as m16x128s4hk), K = 128: two steps.
    {format: 'int4', swiglu: true, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true, tk: 64, depth_: 128, offsets: [3, 12, 12, 37]},
    // 8 subgroups over the columns, in turn through one scratch (the m32x256s8sru kind at 128 columns), k first.
    {format: 'float16', swiglu: true, tm: 32, tn: 128, subgroups: 8, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true, depth_: 64, offsets: [3, 12, 12, 37]},
    // Session 9: the table's kinds at up to 24 rows per expert: bfloat16 (decoded in f32, then rounded to f16) and
    // int8 (the f16 decode) on m32x256s8srul (here 128 columns), int4 on m32x256s8sr2ul; and at 64 columns over 4
    // subgroups with loads 2 steps ahead (bfloat16 at K = 72: a partial last step).
    {format: 'bfloat16', swiglu: true, tm: 32, tn: 128, subgroups: 8, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true, depth_: 64, offsets: [3, 12, 12, 37]},
    {format: 'bfloat16', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, depth: 2, offsets: [3, 12, 12, 37]},
    {format: 'int8', swiglu: true, tm: 32, tn: 128, subgroups: 8, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true, depth_: 64, offsets: [3, 12, 12, 37]},
    {format: 'int8', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, depth: 2, lhsKFast: true, depth_: 64,
      offsets: [3, 12, 12, 37]},
    {format: 'int4', swiglu: true, tm: 32, tn: 128, subgroups: 8, split: true, pad: true, hd: true,
      epilogue: 'serial', rowSkip: true, wholeSteps: true, depth: 2, lhsKFast: true, depth_: 64,
      offsets: [3, 12, 12, 37]},
    // int8 decoded in f32 (hd off: codes through int -> float conversions, the scale in f32).
    {format: 'int8', swiglu: false, tm: 32, tn: 64, subgroups: 4, split: true, pad: true, epilogue: 'serial',
      rowSkip: true, wholeSteps: true, depth_: 64, offsets: [3, 12, 12, 37]},
  ];
  for (const c of cases) {
    it(`${c.format}, ${c.swiglu ? 'SwiGLU x scale' : 'plain'}, ${c.tm} x ${c.tn} tiles, ${c.subgroups} subgroup(s)` +
       `${c.split ? ` splitting the columns${c.rowGroups === 2 ? ' and rows' : ''}` : ''}` +
       `${c.epilogue === 'subgroup' ? ', own epilogue per subgroup' : c.epilogue === 'serial' ? ', subgroups in turn through one scratch' : ''}${c.prefetch === false ? ', no prefetch' : ''}` +
       `${c.lhsKFast ? ', lhs read k first' : ''}${c.depth ? `, loads ${c.depth} steps ahead` : ''}${c.pad ? ', padded strides' : ''}${c.hd ? ', f16 decode' : ''}` +
       `${c.buffers ? ', double-buffered' : ''}${c.sn ? `, 16 x ${c.sn} x 16 matrices` : ''}` +
       `${c.rowSkip ? ', empty row matrices skipped' : ''}${c.wholeSteps ? `, K = ${c.depth_}: no k < K selects` : ''}` +
       `${c.tk ? `, TK = ${c.tk}` : ''}, ` +
       'vs float64', async () => {
      const rand = rng(90 + c.tm + c.tn + +c.swiglu);
      // Rows 0-2 and 37-39 in no segment, expert 1 empty.
      const R = 40, E = 3, K = c.depth_ ?? 72, N = 48, offsets = c.offsets ?? [3, 20, 20, 37];
      const KW = K / (c.format === 'float16' || c.format === 'bfloat16' ? 2 : c.format === 'int8' ? 4 : 8),
          G = Math.ceil(K / 32);
      const x = Float32Array.from({length: R * K}, () => rand() - 0.5);
      // float16: halves with exponents 2^-3 .. 2^1 (both signs), two per word (k even in the low half).
      const half = () => ((rand() < 0.5 ? 0x8000 : 0) | ((12 + Math.floor(rand() * 5)) << 10) |
                          Math.floor(rand() * 1024));
      // bfloat16: exponents 2^-3 .. 2^1 as well (within f16's range: the program rounds them to f16).
      const brain = () => ((rand() < 0.5 ? 0x8000 : 0) | ((124 + Math.floor(rand() * 5)) << 7) |
                           Math.floor(rand() * 128));
      const words = Int32Array.from({length: E * KW * N}, () => c.format === 'float16' ? half() | (half() << 16) :
          c.format === 'bfloat16' ? brain() | (brain() << 16) : (rand() * 4294967296) | 0);
      const brainValue = (b: number) => new Float32Array(Uint32Array.of(b << 16).buffer)[0];
      const halfValue = (h: number) => (h & 0x8000 ? -1 : 1) * (1 + (h & 1023) / 1024) * 2 ** (((h >> 10) & 31) - 15);
      const scales = Float32Array.from({length: E * G * N}, () => 0.05 + 0.1 * rand());
      const wf = Float32Array.from({length: E * K * N}, () => rand() - 0.5);
      const weight = (e: number, k: number, n: number) => c.format === 'float32' ? wf[(e * K + k) * N + n] :
          c.format === 'float16' ? halfValue(words[(e * KW + (k >> 1)) * N + n] >>> (16 * (k & 1)) & 0xffff) :
          c.format === 'bfloat16' ? brainValue(words[(e * KW + (k >> 1)) * N + n] >>> (16 * (k & 1)) & 0xffff) :
          c.format === 'int8' ? scales[(e * G + Math.floor(k / 32)) * N + n] *
              ((words[(e * KW + (k >> 2)) * N + n] << (24 - 8 * (k & 3))) >> 24) :
          scales[(e * G + Math.floor(k / 32)) * N + n] * (((words[(e * KW + (k >> 3)) * N + n] >>> (4 * (k & 7))) & 15) - 8);
      const bias = Float32Array.from({length: E * N}, () => rand() - 0.5);
      const scale = Float32Array.from({length: R}, () => rand() - 0.5);
      const packed = c.format === 'float32' ? undefined : {format: c.format, transposed: false, zeroPoint: false,
          groupSize: c.format === 'float16' || c.format === 'bfloat16' ? 0 : 32, numExperts: E, depth: K, width: N};
      const program = new internal.BatchedGemmProgram({numRows: R, depth: K, width: N, numExperts: E,
        transposeRhs: false, hasBias: true, swiglu: c.swiglu, hasScale: c.swiglu, packed},
        {kind: 'matrix', tm: c.tm, tn: c.tn, tk: c.tk ?? 32, sm: 16, sn: c.sn ?? 16, sk: 16, prefetch: c.prefetch ?? true,
          subgroups: c.subgroups,
          split: c.split, rowGroups: c.rowGroups, pad: c.pad, hd: c.hd, epilogue: c.epilogue, lhsKFast: c.lhsKFast,
          depth: c.depth, buffers: c.buffers, n8: c.sn === 8, rowSkip: c.rowSkip, wholeSteps: c.wholeSteps});
      expect(program.shaderKey.includes('_ws')).withContext('whole steps in the key').toBe(c.wholeSteps === true);
      const code = emulate(program.getUserCode(), c.sn ?? 16);
      expect(code).not.toMatch(/subgroup_matrix|subgroupMatrix/);
      program.getUserCode = () => code;
      program.shaderKey += '_emulated';
      const before = tf.memory().numTensors;
      const inputs = [tf.tensor2d(x, [R, K]),
        ...(c.format === 'int4' || c.format === 'int8' ?
            [tf.tensor3d(words, [E, KW, N], 'int32'), tf.tensor3d(scales, [E, G, N])] :
            c.format === 'float16' || c.format === 'bfloat16' ? [tf.tensor3d(words, [E, KW, N], 'int32')] :
            [tf.tensor3d(wf, [E, K, N])]),
        tf.tensor1d(offsets, 'int32'), tf.tensor2d(bias, [E, N]), ...(c.swiglu ? [tf.tensor1d(scale)] : [])];
      const backend = tf.backend() as unknown as Backend;
      const out = backend.runWebGPUProgram(program, inputs, 'float32', [{type: 'int32', data: [program.colTiles]}]);
      const got = await backend.read(out.dataId);
      backend.disposeData(out.dataId);
      tf.dispose(inputs);
      expect(tf.memory().numTensors).toBe(before);
      const W = c.swiglu ? N / 2 : N;
      let num = 0, den = 0;
      for (let r = 0; r < R; r++) {
        const e = offsets.findIndex((o, j) => j < E && r >= o && r < offsets[j + 1]);
        const h = new Float64Array(N);
        for (let n = 0; e >= 0 && n < N; n++) {
          let s = bias[e * N + n];
          for (let k = 0; k < K; k++) s += x[r * K + k] * weight(e, k, n);
          h[n] = s;
        }
        for (let j = 0; j < W; j++) {
          const want = e < 0 ? 0 : c.swiglu ? h[j] / (1 + Math.exp(-h[j])) * h[W + j] * scale[r] : h[j];
          if (e < 0) expect(got[r * W + j]).withContext(`row ${r} in no segment`).toBe(0);
          num += (got[r * W + j] - want) ** 2;
          den += want ** 2;
        }
      }
      const err = Math.sqrt(num / den);
      recordError('webgpu half-matrix program (emulated matrices)', err);
      expect(err).toBeLessThan(1e-5);
    }, 300_000);
  }
});
