// The wasm kernels over int8 / symmetric int4 expert weights (docs/formats.md; moe_kernels.c's low-bit panels):
// random shapes with whole groups along K (the layouts the kernels take), one row per expert (the in-register
// decode tile) and many (the dequantized panel under the float tiles, row blocks past 32), both orientations,
// bias, the fused SwiGLU x scale; against the float64 reference on the dequantized weights, with the wasm path
// on (checked to have packed the experts) and off (the JavaScript kernels, same cases). Threads: bitwise equal.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {randn, relError, rng, withFlags} from '../helpers/util.js';
import {refBatchedGemm} from '../reference/moe_reference.js';
import {checkGemmCases, FormatVariant, GemmCase, refPacked} from '../ops/expert_formats_cases.js';
import {refDequantize} from '../reference/expert_formats_reference.js';

const SLOW = 120_000;

/** The formats the kernels have, each with the K multiple that gives whole groups. */
const WASM_VARIANTS: Array<{v: FormatVariant, kMultiple: number}> = [
  {v: {label: 'int8 (per column)', format: 'int8'}, kMultiple: 4},
  {v: {label: 'int8 g32', format: 'int8', groupSize: 32}, kMultiple: 32},
  {v: {label: 'int4 g32', format: 'int4', groupSize: 32}, kMultiple: 32},
  {v: {label: 'int4 g128', format: 'int4', groupSize: 128}, kMultiple: 128},
];

/** Runs the case and records whether the wasm cache packed its experts (it grows by their packed bytes). */
function runTracked(c: GemmCase, packedCalls: {wasm: number, total: number}): tf.Tensor2D {
  moe.clearWasmWeightCache();
  const out = c.run();
  packedCalls.total++;
  if (moe.wasmWeightCacheBytes() > 0) packedCalls.wasm++;
  return out;
}

describe('wasm kernels over int8 / int4 expert weights (f32-accumulation bound 1e-5 vs float64)', () => {
  for (const swiglu of [false, true]) {
    const op = swiglu ? 'batchedGemmSwiglu' : 'batchedGemm';
    // Both SIMD builds (scripts/run-specs.mjs turns relaxed SIMD on in Node 20).
    for (const simd of ['relaxed', 'plain'] as const) {
      it(`${op}: wasm path (${simd} SIMD), random shapes, 1 to 40 rows per expert, both orientations, bias`, async () => {
        await withFlags({MOE_WASM_RELAXED_SIMD: simd === 'relaxed'}, async () => {
          expect(moe.wasmStatus().simd).withContext('the build that runs').toBe(simd);
          for (const [i, {v, kMultiple}] of WASM_VARIANTS.entries()) {
            const calls = {wasm: 0, total: 0};
            // At most 2 rows per expert: the integer decode tiles; up to 40: integer tiles for blocks of up to 7
            // rows, the dequantized panel under the float tiles from 8 (row blocks past 32 as well).
            await checkGemmCases('cpu wasm', 41 + i, 4, {E: 6, K: 2 * kMultiple + 64, N: 37, rows: 2},
                                 c => runTracked(c, calls), rng(41 + i + (swiglu ? 100 : 0)), {kMultiple, swiglu}, [v]);
            await checkGemmCases('cpu wasm', 51 + i, 4, {E: 4, K: 2 * kMultiple + 64, N: 37, rows: 40},
                                 c => runTracked(c, calls), rng(51 + i + (swiglu ? 100 : 0)), {kMultiple, swiglu}, [v]);
            // Cases whose experts all have no rows pack nothing; every other one must have run in wasm.
            expect(calls.wasm).withContext(`${v.label}: calls that packed experts in wasm memory`).toBeGreaterThan(0);
          }
        });
      }, SLOW);
    }

    it(`${op}: the JavaScript fallback (MOE_WASM false), the same cases`, async () => {
      await withFlags({MOE_WASM: false}, async () => {
        for (const [i, {v, kMultiple}] of WASM_VARIANTS.entries()) {
          const calls = {wasm: 0, total: 0};
          await checkGemmCases('cpu js', 51 + i, 4, {E: 4, K: 2 * kMultiple + 64, N: 37, rows: 40},
                               c => runTracked(c, calls), rng(51 + i + (swiglu ? 100 : 0)), {kMultiple, swiglu}, [v]);
          expect(calls.wasm).withContext(`${v.label}: nothing packed with MOE_WASM false`).toBe(0);
        }
      });
    }, SLOW);
  }

  it('formats without wasm kernels (mxfp4, int4 with zero points, partial groups) run in JavaScript, correctly',
     async () => {
       const calls = {wasm: 0, total: 0};
       await checkGemmCases('cpu js fallback', 61, 2, {E: 3, K: 100, N: 20, rows: 5}, c => runTracked(c, calls),
                            rng(61), {}, [{label: 'mxfp4', format: 'mxfp4'},
                              {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true}]);
       await checkGemmCases('cpu js fallback', 62, 2, {E: 3, K: 0, N: 0, rows: 0}, c => runTracked(c, calls),
                            rng(62), {fixed: {K: 50, N: 9, counts: [3, 1]}}, [{label: 'int4 g32, K = 50',
                              format: 'int4', groupSize: 32}]);
       expect(calls.wasm).withContext('calls that ran in wasm').toBe(0);
     }, SLOW);

  it('gives bitwise the same output on 1, 2 and 3 threads', async () => {
    const rand = rng(71);
    const E = 3, K = 256, N = 157, R = 200;
    for (const format of ['int8', 'int4'] as const) {
      const w = randn(rand, E * N * K);
      const q = moe.quantizeExpertWeightsFromArray(w, [E, N, K], format, {groupSize: 32, transposed: true});
      const lhs = tf.tensor2d(randn(rand, R * K), [R, K]);
      const segments = tf.tensor1d([1, 190, 9], 'int32');
      const outputs: Float32Array[] = [];
      for (const threads of [1, 2, 3]) {
        await withFlags({MOE_WASM_THREADS: threads}, async () => {
          const out = moe.batchedGemm(lhs, q, segments, {transposeRhs: true});
          expect(moe.wasmStatus().lastCallThreads).withContext(`${format}: threads the call ran on`).toBe(threads);
          outputs.push(await out.data() as Float32Array);
          out.dispose();
        });
      }
      const deq = Float32Array.from(refDequantize(await refPacked(q)));
      const expected = refBatchedGemm(await lhs.data(), R, K, deq, E, N, Int32Array.from([0, 1, 191, 200]), true, null);
      expect(relError(outputs[0], expected)).withContext(format).toBeLessThan(1e-5);
      expect(outputs[1]).withContext(`${format}: 2 threads`).toEqual(outputs[0]);
      expect(outputs[2]).withContext(`${format}: 3 threads`).toEqual(outputs[0]);
      tf.dispose([lhs, segments, q as unknown as tf.TensorContainer]);
    }
  });
});

describe('wasm kernels over int8 / int4: rows the integer tiles cannot take', () => {
  // The integer tiles split every row into int16 halves; a row block with a row it cannot split (a value not
  // finite, or all below 2^-100) takes the float32 tiles instead: one row streams the codes, several rows
  // dequantize the panel in slices. Against the reference (finite rows) and the JavaScript kernel (NaN / Inf).
  it('tiny, zero, huge and non-finite rows, alone or with other rows of their expert', async () => {
    const rand = rng(81);
    const E = 2, K = 320, N = 11;
    for (const format of ['int8', 'int4'] as const) {
      const q = moe.quantizeExpertWeightsFromArray(randn(rand, E * K * N), [E, K, N], format, {groupSize: 32});
      const deq = Float32Array.from(refDequantize(await refPacked(q)));
      for (const rows0 of [1, 6]) {
        const R = rows0 + 1;
        for (const [label, fill] of [['1e-35 (below 2^-100)', 1e-35], ['0', 0], ['1e30', 1e30],
          ['one Inf', Infinity], ['one NaN', NaN]] as const) {
          const x = randn(rand, R * K);
          for (let i = 0; i < K; i++) x[i] = Number.isFinite(fill) ? x[i] * fill : x[i];
          if (!Number.isFinite(fill)) x[5] = fill;
          const lhs = tf.tensor2d(x, [R, K]), segments = tf.tensor1d([rows0, 1], 'int32');
          const got = await moe.batchedGemm(lhs, q, segments).data() as Float32Array;
          const js = await withFlags({MOE_WASM: false}, async () =>
            await moe.batchedGemm(lhs, q, segments).data() as Float32Array);
          const ctx = `${format}, ${rows0} rows of expert 0, row 0 ${label}`;
          const expected = refBatchedGemm(x, R, K, deq, E, N, Int32Array.from([0, rows0, R]), false, null);
          if (Number.isFinite(fill)) {
            if (fill === 0) expect(Array.from(got.subarray(0, N))).withContext(ctx).toEqual(new Array(N).fill(0));
            else expect(relError(got.subarray(0, N), expected.subarray(0, N))).withContext(ctx).toBeLessThan(1e-5);
          } else {
            // Non-finite values propagate exactly as in the JavaScript kernel (Inf * 0 weights give NaN, etc.).
            for (let n = 0; n < N; n++) {
              expect(Number.isNaN(got[n]) === Number.isNaN(js[n]) && (Number.isNaN(js[n]) || got[n] === js[n]))
                  .withContext(`${ctx}: column ${n}: wasm ${got[n]}, js ${js[n]}`).toBeTrue();
            }
          }
          expect(relError(got.subarray(N), expected.subarray(N))).withContext(`${ctx}: the other rows`)
              .toBeLessThan(1e-5);
          tf.dispose([lhs, segments]);
        }
      }
      tf.dispose(q as unknown as tf.TensorContainer);
    }
  });
});

describe('wasm kernels over int8: groups with tiny scales', () => {
  // The relaxed build converts int8 panels for the float tiles by a byte shuffle into the top byte (c * 2^24) and
  // scales by s * 2^-24; a group with a scale below 2^-102 would make that subnormal and inexact, so it takes the
  // pair conversion (without that check this spec fails: 1.9e-5). Weights about 1e-35 next to normal ones, 16 rows
  // per expert (the dequantized panel), both builds, against the reference on the dequantized weights.
  it('tiny-scale experts and columns match the float64 reference (both SIMD builds)', async () => {
    const rand = rng(91);
    const E = 2, K = 256, N = 24, R = 32;
    const w = randn(rand, E * K * N);
    // Expert 0 tiny throughout; expert 1 tiny in its even columns only (each column its own scales).
    for (let e = 0; e < E; e++) {
      for (let k = 0; k < K; k++) {
        for (let n = 0; n < N; n++) if (e === 0 || n % 2 === 0) w[(e * K + k) * N + n] *= 1e-35;
      }
    }
    const q = moe.quantizeExpertWeightsFromArray(w, [E, K, N], 'int8', {groupSize: 32});
    const deq = Float32Array.from(refDequantize(await refPacked(q)));
    const x = randn(rand, R * K);
    const lhs = tf.tensor2d(x, [R, K]), segments = tf.tensor1d([16, 16], 'int32');
    const expected = refBatchedGemm(x, R, K, deq, E, N, Int32Array.from([0, 16, 32]), false, null);
    for (const simd of ['relaxed', 'plain'] as const) {
      await withFlags({MOE_WASM_RELAXED_SIMD: simd === 'relaxed'}, async () => {
        expect(moe.wasmStatus().simd).withContext('the build that runs').toBe(simd);
        const got = await moe.batchedGemm(lhs, q, segments).data() as Float32Array;
        expect(relError(got.subarray(0, 16 * N), expected.subarray(0, 16 * N))).withContext(`${simd}: expert 0`)
            .toBeLessThan(1e-5);
        const even = (a: Float32Array | Float64Array) => Array.from(a.subarray(16 * N)).filter((_, i) => i % 2 === 0);
        expect(relError(even(got), even(expected))).withContext(`${simd}: expert 1, tiny columns`).toBeLessThan(1e-5);
        expect(relError(got.subarray(16 * N), expected.subarray(16 * N))).withContext(`${simd}: expert 1`)
            .toBeLessThan(1e-5);
      });
    }
    tf.dispose([lhs, segments, q as unknown as tf.TensorContainer]);
  });
});
