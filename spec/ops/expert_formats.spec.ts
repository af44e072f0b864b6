// Expert weight formats (docs/formats.md) on the cpu backend, through our kernels and the composite path: the
// quantizer's rules, dequantization against the independent decoder, batchedGemm over packed weights against the
// float64 reference, the quantization error table, the byte table, the checkpoint converters, argument errors.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, randn, readAll, recordError, rng} from '../helpers/util.js';
import {
  refBfloat16, refDequantize, refE2M1, refHalf, refQuantizeInt4, refQuantizeInt4Group, refRoundEven,
} from '../reference/expert_formats_reference.js';
import {checkGemmCases, firstBitMismatch, options, refPacked, VARIANTS} from './expert_formats_cases.js';

const SLOW = 120_000;

/** Quantizes w [1, K, 1]... as given, dequantizes, returns the float32 values (no tensor left behind). */
function roundTrip(w: ArrayLike<number>, shape: number[], format: moe.ExpertWeightFormat,
                   opts: moe.QuantizeExpertWeightsOptions = {}): Float32Array {
  const q = moe.quantizeExpertWeightsFromArray(Float32Array.from(w), shape, format, opts);
  const d = moe.dequantizeExpertWeights(q);
  const out = d.dataSync() as Float32Array;
  tf.dispose([q as unknown as tf.TensorContainer, d]);
  return out;
}

/** A column of K weights (shape [1, K, 1]). */
function column(w: number[], format: moe.ExpertWeightFormat, opts: moe.QuantizeExpertWeightsOptions = {}): number[] {
  return Array.from(roundTrip(w, [1, w.length, 1], format, opts));
}

describe('expert weight formats: the quantizer (docs/formats.md section 4)', () => {
  it('float16 keeps every binary16 value bit for bit, rounds midpoints to even, overflows to Inf', () => {
    const values: number[] = [], expected: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {  // every finite non-negative pattern and its negative
      values.push(refHalf(h), refHalf(h | 0x8000));
      expected.push(refHalf(h), refHalf(h | 0x8000));
      if (h + 1 < 0x7c00) {
        // Midpoint of h and h+1 (exact in float32): ties go to the even mantissa.
        values.push((refHalf(h) + refHalf(h + 1)) / 2);
        expected.push(refHalf(h % 2 === 0 ? h : h + 1));
      }
    }
    values.push(Infinity, -Infinity, NaN, 65519.99, 65520, 1e-10, -1e-10, 2 ** -25, 2 ** -25 * 1.0001);
    expected.push(Infinity, -Infinity, NaN, 65504, Infinity, 0, -0, 0, 2 ** -24);
    const got = roundTrip(values, [1, values.length, 1], 'float16');
    expect(firstBitMismatch(got, Float32Array.from(expected))).toBe(-1);
  });

  it('bfloat16 rounds to nearest even on the dropped 16 bits (random patterns, ties, NaN, overflow)', () => {
    const rand = rng(7);
    const bits = new Uint32Array(20000);
    for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(rand() * 2 ** 32);
    for (let i = 0; i < 200; i++) bits[i] = (bits[i] & 0xffff0000) | 0x8000;  // exact ties
    bits[200] = 0x7f7fffff;  // float32 max: rounds up to Inf
    const w = new Float32Array(bits.buffer);
    const expected = Array.from(w, x => {
      if (Number.isNaN(x)) return NaN;
      const b = new Uint32Array(Float32Array.of(x).buffer)[0];
      const lo = b >>> 16, a = refBfloat16(lo), c = refBfloat16(lo + 1);
      // Past the largest finite value the rounding boundary is 2^128 (IEEE overflow).
      const cDist = Number.isFinite(c) ? Math.abs(c - x) : Math.abs(Math.sign(x) * 2 ** 128 - x);
      const da = Math.abs(x - a);
      if (!Number.isFinite(a)) return a;
      return da < cDist || (da === cDist && lo % 2 === 0) ? a : c;
    });
    expect(expected[200]).toBe(Infinity);
    const got = roundTrip(w, [1, w.length, 1], 'bfloat16');
    expect(firstBitMismatch(got, Float32Array.from(expected))).toBe(-1);
  });

  it('int8: exact on representable columns, ties to even, clamps, all-zero columns give zeros', () => {
    const c = 2 ** -5;
    expect(column([127, -127, 3, -64, 0, 1].map(q => q * c), 'int8')).toEqual([127, -127, 3, -64, 0, 1].map(q => q * c));
    // s = c exactly (max 127c): 2.5c, 3.5c, -2.5c are ties.
    expect(column([127 * c, 2.5 * c, 3.5 * c, -2.5 * c, -0.5 * c], 'int8')).toEqual([127 * c, 2 * c, 4 * c, -2 * c, 0]);
    expect(column([0, 0, 0], 'int8')).toEqual([0, 0, 0]);
    // Groups: the second group's scale is its own.
    expect(column([127, 1, 127 * 4, 4], 'int8', {groupSize: 2})).toEqual([127, 1, 127 * 4, 4]);
  });

  it('int4: exact groups come back unchanged (all 16 codes), zero point min/max, partial last group', () => {
    const c = 0.25;
    // The largest magnitude on -8 (s = c) or on +7 (the mirrored candidate, s = c): both grids hold these exactly.
    const low = [-8, 7, 1, 2, 3, -3, 0, 6].map(q => q * c), high = [7, -7, 1, -2, 3, 5, 0, -6].map(q => q * c);
    expect(column(low, 'int4', {groupSize: 32})).toEqual(low);
    expect(column(high, 'int4', {groupSize: 32})).toEqual(high);
    // hi - lo = 15c: s = c, z = 5, every multiple of c in [-5c, 10c] exact.
    const zp = [10, -5, 0, 1, 2, 3, -4, 7].map(q => q * c);
    expect(column(zp, 'int4', {groupSize: 32, zeroPoint: true})).toEqual(zp);
    // K = 40 with groups of 32: the last group (8 values) has its own scale.
    const k40 = [...Array.from({length: 32}, (_, k) => 7 * ((k % 16) - 8)), ...[-8, 7, 1, 2, 3, -3, 0, 5].map(q => q / 8)];
    expect(column(k40, 'int4')).toEqual(k40);
    expect(column([0, 0], 'int4', {zeroPoint: true})).toEqual([0, 0]);
    expect(column([0, -0, 0], 'int4')).toEqual([0, 0, 0]);
  });

  it('int4: the scale search picks the independent quantizer\'s codes, scales and zero points bit for bit', () => {
    const rand = rng(41);
    const f = Math.fround;
    for (let trial = 0; trial < 12; trial++) {
      const zeroPoint = trial % 2 === 1, transposed = trial % 4 >= 2;
      const groupSize = [32, 64, 128][trial % 3];
      const [E, K, N] = [1 + Math.floor(rand() * 2), 1 + Math.floor(rand() * 300), 1 + Math.floor(rand() * 9)];
      const w = Float32Array.from(randn(rand, E * K * N), x => x * (trial < 6 ? 0.02 : 3));
      // Special groups: constant (candidates -8 and 7 both exact: the first wins the tie), ties of w / s at half
      // steps (s = 1), subnormal scales; +a and -a both largest (the first in k order is m); an all-zero column.
      const pick = (k: number, n: number, e = 0) => transposed ? (e * N + n) * K + k : (e * K + k) * N + n;
      for (let k = 0; k < Math.min(K, groupSize); k++) {
        w[pick(k, 0)] = trial % 3 === 0 ? 0.75 : trial % 3 === 1 ? (k === 0 ? -8 : (k % 7) - 2.5) : f(2 ** -140 * (k % 7 - 3));
      }
      if (N > 1 && K > 3) [w[pick(1, 1)], w[pick(3, 1)]] = [-100, 100];
      if (N > 2) for (let k = 0; k < K; k++) w[pick(k, 2)] = 0;
      const shape = transposed ? [E, N, K] : [E, K, N];
      const q = moe.quantizeExpertWeightsFromArray(w, shape, 'int4', {groupSize, zeroPoint, transposed});
      const ref = refQuantizeInt4(w, shape, groupSize, zeroPoint, transposed);
      const label = `trial ${trial}: [${shape}] g${groupSize} zp ${zeroPoint} transposed ${transposed}`;
      expect(firstBitMismatch(q.scales!.dataSync(), Float32Array.from(ref.scales!))).withContext(`${label} scales`).toBe(-1);
      expect(firstBitMismatch(q.values.dataSync(), Int32Array.from(ref.values))).withContext(`${label} codes`).toBe(-1);
      if (zeroPoint) {
        expect(firstBitMismatch(q.zeroPoints!.dataSync(), Float32Array.from(ref.zeroPoints!)))
            .withContext(`${label} zero points`).toBe(-1);
      }
      tf.dispose(q as unknown as tf.TensorContainer);
    }
  });

  it('int4: the search never does worse than the plain max-abs / min-max grids on a group', () => {
    // The symmetric list holds s = m / 7 (the grid before the search) and the zero point list f = 1 (min/max),
    // so the chosen squared error is at most theirs; and the search lowers it on random normal groups.
    const rand = rng(43);
    const f = Math.fround;
    for (const zeroPoint of [false, true]) {
      let searched = 0, plain = 0;
      for (let trial = 0; trial < 400; trial++) {
        const w = Array.from(randn(rand, 32), x => f(x));
        const r = refQuantizeInt4Group(w, zeroPoint);
        const m = w.reduce((a, x) => (Math.abs(x) > Math.abs(a) ? x : a), 0);
        const lo = Math.min(0, ...w), hi = Math.max(0, ...w);
        const s = zeroPoint ? f(f(hi - lo) / 15) : f(m / 7);
        const z = zeroPoint ? Math.min(15, Math.max(0, refRoundEven(f(-lo / s)))) : 0;
        const got = column(w, 'int4', {zeroPoint});
        let e1 = 0, e0 = 0;
        w.forEach((x, k) => {
          e1 += (got[k] - x) ** 2;
          const q = refRoundEven(f(x / s));
          e0 += (f(s * (zeroPoint ? Math.min(15, Math.max(0, q + z)) - z : Math.min(7, Math.max(-7, q)))) - x) ** 2;
          expect(got[k]).toBe(f(r.scale * (r.codes[k] - r.zero)));
        });
        expect(e1).toBeLessThanOrEqual(e0 * (1 + 1e-12));
        searched += e1;
        plain += e0;
      }
      expect(Math.sqrt(searched / plain)).withContext(`zeroPoint ${zeroPoint}`).toBeLessThan(zeroPoint ? 0.99 : 0.9);
    }
  });

  it('mxfp4: E2M1 values times the block power of two are exact; ties to the even code; saturation at 6', () => {
    const e2m1 = Array.from({length: 16}, (_, code) => refE2M1(code));
    for (const x of [-3, 0, 5]) {
      const block = e2m1.map(v => v * 2 ** x);
      expect(column(block, 'mxfp4')).toEqual(block);
    }
    // max 6 -> X = 0: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4; max 7.5 saturates.
    expect(column([6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -5, -0.1], 'mxfp4'))
        .toEqual([6, 0, 1, 1, 2, 2, 4, 4, -4, -0]);
    expect(column([7.5, 1], 'mxfp4')).toEqual([6, 1]);
    expect(column([0, 0, 0], 'mxfp4')).toEqual([0, 0, 0]);
  });

  it('rejects NaN and Inf for the integer formats and mxfp4, naming the element; no tensor leaks', () => {
    for (const format of ['int8', 'int4', 'mxfp4'] as const) {
      expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(Float32Array.of(1, NaN, 2, 3), [1, 2, 2], format),
                         new RegExp(`finite values for format '${format}', got NaN at \\[0,0,1\\]`));
    }
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(Float32Array.of(1, -Infinity), [1, 1, 2], 'int4'),
                       /got -Infinity at \[0,0,1\]/);
  });
});

describe('expert weight formats: dequantizeExpertWeights (docs/formats.md section 3)', () => {
  for (const composite of [false, true]) {
    it(`equals the independent decoder bit for bit, every format, both orientations${composite ? ' (composite)' : ''}`,
       async () => {
         const rand = rng(composite ? 21 : 20);
         for (const v of VARIANTS) {
           for (let trial = 0; trial < 4; trial++) {
             const E = 1 + Math.floor(rand() * 3), K = Math.floor(rand() * 150), N = 1 + Math.floor(rand() * 9);
             const transposed = trial % 2 === 1;
             const shape = transposed ? [E, N, K] : [E, K, N];
             const q = moe.quantizeExpertWeightsFromArray(randn(rand, E * K * N), shape, v.format, options(v, transposed));
             await expectNoLeak(async () => {
               const d = composite ? moe.withCompositeKernels(() => moe.dequantizeExpertWeights(q)) :
                   moe.dequantizeExpertWeights(q);
               expect(d.shape).toEqual(shape);
               const [got] = await readAll(d);
               const want = Float32Array.from(refDequantize(await refPacked(q)));
               expect(firstBitMismatch(got, want)).withContext(`${v.label} [${shape}] t=${transposed}`).toBe(-1);
             });
             tf.dispose(q as unknown as tf.TensorContainer);
           }
         }
       }, SLOW);
  }
});

describe('expert weight formats: batchedGemm over packed weights (f32-accumulation bound 1e-5)', () => {
  it('cpu kernel: every format, random shapes, K not a multiple of the group, transposeRhs, bias, empty experts',
     async () => {
       await checkGemmCases('cpu', 31, 6, {E: 5, K: 200, N: 40, rows: 7}, c => c.run(), rng(31));
     }, SLOW);

  it('cpu kernel across its tile boundaries (K > 128, N > 256, more than 64 rows of one expert)', async () => {
    await checkGemmCases('cpu', 33, 2, {E: 0, K: 0, N: 0, rows: 0}, c => c.run(), rng(33),
                         {fixed: {K: 260, N: 300, counts: [70, 0, 3]}});
  }, SLOW);

  it('composite path (stock ops, one expert range at a time): the same cases', async () => {
    await checkGemmCases('composite', 32, 4, {E: 5, K: 150, N: 30, rows: 5},
                         c => moe.withCompositeKernels(() => c.run()), rng(32));
  }, SLOW);

  it('fused up-projection + SwiGLU (x row scale) over packed weights: cpu kernel and composite', async () => {
    await checkGemmCases('cpu', 35, 3, {E: 4, K: 100, N: 24, rows: 5}, c => c.run(), rng(35), {swiglu: true});
    await checkGemmCases('composite', 36, 2, {E: 4, K: 100, N: 24, rows: 5},
                         c => moe.withCompositeKernels(() => c.run()), rng(36), {swiglu: true});
    const q = moe.quantizeExpertWeightsFromArray(new Float32Array(3 * 8 * 5), [3, 8, 5], 'int8');
    const lhs = tf.zeros([2, 8]) as tf.Tensor2D, seg = tf.tensor1d([1, 1, 0], 'int32');
    expectThrowsNoLeak(() => moe.batchedGemmSwiglu(lhs, q, seg),
                       /batchedGemmSwiglu: argument 'rhs' must be a weight with an even output width N = 2I/);
    tf.dispose([lhs, seg, q as unknown as tf.TensorContainer]);
  }, SLOW);

  it('composite path with several expert ranges (budget forced to 1-2 experts per range)', async () => {
    for (const budget of [1, 5000]) {
      moe.setQuantizedCompositeBudget(budget);
      try {
        await checkGemmCases(`composite ranges`, 34, 2, {E: 5, K: 40, N: 30, rows: 4},
                             c => moe.withCompositeKernels(() => c.run()), rng(34 + budget));
      } finally {
        moe.setQuantizedCompositeBudget(null);
      }
    }
  }, SLOW);

  it('argument errors name the argument; nothing leaks', () => {
    const q = moe.quantizeExpertWeightsFromArray(new Float32Array(2 * 64 * 3), [2, 64, 3], 'int4');
    const lhs = tf.zeros([4, 64]) as tf.Tensor2D, seg = tf.tensor1d([0, 2, 4], 'int32');
    const lhs63 = tf.zeros([4, 63]) as tf.Tensor2D, seg4 = tf.tensor1d([0, 1, 2, 3], 'int32');
    const bias24 = tf.zeros([2, 4]) as tf.Tensor2D, rank2 = tf.zeros([2, 2]);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, q, seg, {transposeRhs: true}),
                       /argument 'options.transposeRhs' must be false for rhs quantized in the \[E,K,N\] layout/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs63, q, seg),
                       /argument 'lhs' must be \[R,K\] with K = 64/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, q, seg4),
                       /argument 'segments' must be of length E\+1 = 3/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, {...q, format: 'int3'} as never, seg),
                       /argument 'rhs.format' must be one of 'float32', 'float16'/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, {...q, scales: undefined}, seg),
                       /argument 'rhs.scales' must be a float32 tensor of rank 3 \[2,2,3\], got undefined/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, {...q, values: q.scales!}, seg),
                       /argument 'rhs.values' must be a int32 tensor/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, {...q, groupSize: 48}, seg),
                       /argument 'rhs.groupSize' must be one of 32, 64, 128 for int4, got 48/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, q, seg, {bias: bias24}),
                       /argument 'options.bias' must be of shape \[E,N\] = \[2,3\]/);
    expectThrowsNoLeak(() => moe.batchedGemm(lhs, 'q' as never, seg), /argument 'rhs' must be .*or a QuantizedExpertWeights/);
    tf.dispose([lhs, seg, lhs63, seg4, bias24, q as unknown as tf.TensorContainer]);
    const w = new Float32Array(8);
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(w, [1, 4, 2], 'int8', {zeroPoint: true}),
                       /argument 'options.zeroPoint' must be false for format 'int8'/);
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(w, [1, 4, 2], 'mxfp4', {groupSize: 16}),
                       /argument 'options.groupSize' must be 32 for mxfp4/);
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(w, [1, 4, 2], 'float16', {groupSize: 16}),
                       /argument 'options.groupSize' must be absent for format 'float16'/);
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(w, [1, 4, 3], 'int8'), /argument 'data' must be 12 values/);
    expectThrowsNoLeak(() => moe.quantizeExpertWeightsFromArray(w, [1, 4, 2], 'int4', {foo: 1} as never),
                       /argument 'options' must be an options object with keys \{groupSize, zeroPoint, transposed\}, got key 'foo'/);
    expectThrowsNoLeak(() => moe.quantizeExpertWeights(rank2 as never, 'int8'),
                       /quantizeExpertWeights: argument 'w' must be a float32 tensor of rank 3/);
    rank2.dispose();
  });

  it('createExpertWeightsBuilder (expert by expert) equals quantizing the whole array, bit for bit', async () => {
    const rand = rng(41);
    for (const v of VARIANTS) {
      for (const transposed of [false, true]) {
        const [E, K, N] = [3, 45, 6];
        const shape = transposed ? [E, N, K] : [E, K, N];
        const data = randn(rand, E * K * N);
        await expectNoLeak(async () => {
          const whole = moe.quantizeExpertWeightsFromArray(data, shape, v.format, options(v, transposed));
          const builder = moe.createExpertWeightsBuilder(shape, v.format, options(v, transposed));
          for (const e of [2, 0, 1]) builder.setExpert(e, data.slice(e * K * N, (e + 1) * K * N));
          const built = builder.build();
          const ctx = `${v.label} transposed=${transposed}`;
          expect(built.shape).withContext(ctx).toEqual(whole.shape);
          for (const part of ['values', 'scales', 'zeroPoints'] as const) {
            expect(built[part] == null).withContext(`${ctx} ${part}`).toBe(whole[part] == null);
            if (whole[part] != null) {
              expect(firstBitMismatch(await built[part]!.data(), await whole[part]!.data()))
                  .withContext(`${ctx} ${part}`).toBe(-1);
            }
          }
          tf.dispose([whole, built] as unknown as tf.TensorContainer);
        });
      }
    }
    const b = moe.createExpertWeightsBuilder([2, 4, 3], 'int8');
    expectThrowsNoLeak(() => b.setExpert(2, new Float32Array(12)), /argument 'e' must be an integer in \[0, 1\]/);
    expectThrowsNoLeak(() => b.setExpert(0, new Float32Array(11)), /argument 'w' must be a Float32Array of K\*N = 12/);
    expectThrowsNoLeak(() => b.setExpert(1, new Float32Array(12).fill(NaN)), /got NaN at \[0,0,0\] \(index within expert 1\)/);
    b.setExpert(0, new Float32Array(12));
    expectThrowsNoLeak(() => b.build(), /expert 1 was never set/);
  });

  it('quantizeExpertWeights (tensor) equals the host quantizer; the async form too', async () => {
    const rand = rng(40);
    const data = randn(rand, 2 * 70 * 5);
    const w = tf.tensor3d(data, [2, 70, 5]);
    await expectNoLeak(async () => {
      const a = moe.quantizeExpertWeights(w, 'int4', {groupSize: 64, zeroPoint: true});
      const b = await moe.quantizeExpertWeightsAsync(w, 'int4', {groupSize: 64, zeroPoint: true});
      const c = moe.quantizeExpertWeightsFromArray(data, [2, 70, 5], 'int4', {groupSize: 64, zeroPoint: true});
      for (const q of [a, b]) {
        expect(await q.values.data()).toEqual(await c.values.data());
        expect(await q.scales!.data()).toEqual(await c.scales!.data());
        expect(await q.zeroPoints!.data()).toEqual(await c.zeroPoints!.data());
      }
      tf.dispose([a, b, c] as unknown as tf.TensorContainer);
    });
    w.dispose();
  });
});

/** Relative L2 of y = x @ W' against y = x @ W (float64), W' = dequantize(quantize(W)). */
function layerError(v: typeof VARIANTS[number], seed: number): number {
  const rand = rng(seed);
  const E = 2, K = 512, N = 128, T = 32;
  const w = randn(rand, E * K * N, 0.05), x = randn(rand, T * K);
  const q = moe.quantizeExpertWeightsFromArray(w, [E, K, N], v.format, options(v, false));
  const d = moe.dequantizeExpertWeights(q);
  const wq = d.dataSync();
  tf.dispose([q as unknown as tf.TensorContainer, d]);
  let num = 0, den = 0;
  for (let e = 0; e < E; e++) {
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < N; n++) {
        let y = 0, yq = 0;
        for (let k = 0; k < K; k++) {
          y += x[t * K + k] * w[(e * K + k) * N + n];
          yq += x[t * K + k] * wq[(e * K + k) * N + n];
        }
        num += (yq - y) ** 2;
        den += y ** 2;
      }
    }
  }
  return Math.sqrt(num / den);
}

describe('expert weight formats: the numbers of the closing note', () => {
  it('quantization error (relative L2 of a layer output on random normal weights) within the stated bounds', () => {
    const bounds: Record<string, number> = {
      'float32': 0, 'float16': 1e-3, 'bfloat16': 5e-3, 'int8': 2e-2, 'int8 g32': 2e-2, 'int4 g32': 0.12,
      'int4 g64 zp': 0.12, 'int4 g128': 0.2, 'mxfp4': 0.2,
    };
    const lines: string[] = [];
    for (const v of VARIANTS) {
      const err = layerError(v, 50);
      recordError(`quantization error (relative L2) ${v.label}`, err);
      lines.push(`| ${v.label} | ${err.toExponential(2)} | ${bounds[v.label]} |`);
      expect(err).withContext(v.label).toBeLessThanOrEqual(bounds[v.label]);
      if (v.format !== 'float32') expect(err).withContext(`${v.label} is lossy`).toBeGreaterThan(0);
    }
    console.log(`\n| format | relative L2 (x [32,512] @ W [512,128] x 2 experts) | bound |\n|---|---|---|\n${lines.join('\n')}`);
  });

  it('bytes of one Qwen3-30B-A3B layer\'s experts per format, from the packing', () => {
    const [E, H, I] = [128, 2048, 768];
    const lines: string[] = [];
    const gb = (b: number) => (b / 1e9).toFixed(3);
    const sizes: Record<string, number> = {};
    for (const v of [...VARIANTS, {label: 'int4 g128 zp', format: 'int4' as const, groupSize: 128, zeroPoint: true}]) {
      const bytes = moe.expertWeightBytes([E, H, 2 * I], v.format, options(v, false)) +
          moe.expertWeightBytes([E, I, H], v.format, options(v, false));
      // The transposed layout holds the same bytes up to scale-row padding.
      const t = moe.expertWeightBytes([E, 2 * I, H], v.format, options(v, true)) +
          moe.expertWeightBytes([E, H, I], v.format, options(v, true));
      expect(Math.abs(t - bytes) / bytes).toBeLessThan(1e-3);
      sizes[v.label] = bytes;
      lines.push(`| ${v.label} | ${bytes} | ${gb(bytes)} |`);
    }
    expect(sizes.float32).toBe(603979776 * 4);
    expect(sizes.float16).toBe(603979776 * 2);
    expect(sizes.bfloat16).toBe(603979776 * 2);
    expect(sizes.mxfp4).toBe(603979776 / 2 + 603979776 / 32);
    expect(sizes['int4 g32']).toBe(603979776 / 2 + 603979776 / 32 * 4);
    console.log(`\n| format | bytes | GB |\n|---|---|---|\n${lines.join('\n')}`);
  });
});

describe('expert weight formats: checkpoint converters (docs/formats.md section 5)', () => {
  it('gpt-oss MXFP4 blocks/scales load bit for bit (low nibble = even element, ldexp(lut, byte - 127))', async () => {
    const rand = rng(60);
    const [E, N, G] = [2, 3, 5];  // K = 160; G not a multiple of 4 pads the packed scale rows
    const blocks = Uint8Array.from({length: E * N * G * 16}, () => Math.floor(rand() * 256));
    const scales = Uint8Array.from({length: E * N * G}, () => 110 + Math.floor(rand() * 30));
    await expectNoLeak(async () => {
      const q = moe.fromGptOssMxfp4({data: blocks, shape: [E, N, G, 16]}, {data: scales, shape: [E, N, G]});
      expect(q.shape).toEqual([E, N, G * 32]);
      expect(q.transposed).toBeTrue();
      // The gpt-oss decoding, straight from its description.
      const want = new Float32Array(E * N * G * 32);
      for (let row = 0; row < E * N; row++) {
        for (let g = 0; g < G; g++) {
          for (let i = 0; i < 16; i++) {
            const byte = blocks[(row * G + g) * 16 + i], s = scales[row * G + g] - 127;
            want[row * G * 32 + g * 32 + 2 * i] = refE2M1(byte & 15) * 2 ** s;
            want[row * G * 32 + g * 32 + 2 * i + 1] = refE2M1(byte >> 4) * 2 ** s;
          }
        }
      }
      const [got] = await readAll(moe.dequantizeExpertWeights(q));
      expect(firstBitMismatch(got, want)).toBe(-1);
      // The values tensor is the blocks' bytes read as little-endian int32.
      expect(new Uint8Array((await q.values.data() as Int32Array).buffer)).toEqual(blocks);
      // Re-laid out as [E,K,N]: the same weights, transposed.
      const t = moe.transposeQuantizedExpertWeights(q);
      expect(t.shape).toEqual([E, G * 32, N]);
      const [tGot] = await readAll(tf.tidy(() => tf.transpose(moe.dequantizeExpertWeights(t), [0, 2, 1])));
      expect(firstBitMismatch(tGot, want)).toBe(-1);
      tf.dispose([q, t] as unknown as tf.TensorContainer);
    });
    expectThrowsNoLeak(() => moe.fromGptOssMxfp4({data: blocks, shape: [E, N, G, 8]}, {data: scales, shape: [E, N, G]}),
                       /argument 'blocks.shape' must be \[E, N, G, 16\]/);
    expectThrowsNoLeak(() => moe.fromGptOssMxfp4({data: blocks, shape: [E, N, G, 16]}, {data: scales, shape: [E, N, 4]}),
                       /argument 'scales.shape' must be \[E, N, G\] = \[2,3,5\]/);
  });

  it('raw F16 / BF16 data loads bit for bit in both orientations (bytes or 16-bit patterns, even or odd K)',
     async () => {
    const rand = rng(61);
    for (const dtype of ['F16', 'BF16'] as const) {
      for (const transposed of [false, true]) {
        for (const shape of [[2, 5, 7], [2, 5, 8]]) {  // [E,N,K] with K even: the words are the data
          const count = shape[0] * shape[1] * shape[2];
          const halves = Uint16Array.from({length: count}, () => Math.floor(rand() * 65536));
          const bytes = new Uint8Array(halves.buffer.slice(0));
          for (const data of [bytes, halves]) {
            await expectNoLeak(async () => {
              const q = moe.fromPackedHalf({dtype, shape, data, transposed});
              expect(q.format).toBe(dtype === 'F16' ? 'float16' : 'bfloat16');
              const [got] = await readAll(moe.dequantizeExpertWeights(q));
              const want = Float32Array.from(halves, h => (dtype === 'F16' ? refHalf(h) : refBfloat16(h)));
              const ctx = `${dtype} [${shape}] transposed=${transposed} ${data.constructor.name}`;
              expect(firstBitMismatch(got, want)).withContext(ctx).toBe(-1);
              tf.dispose(q as unknown as tf.TensorContainer);
            });
          }
          expect(bytes).toEqual(new Uint8Array(halves.buffer));  // the caller's data is not touched
        }
      }
    }
    expectThrowsNoLeak(() => moe.fromPackedHalf({dtype: 'BF16', shape: [1, 2, 3], data: new Uint8Array(10)}),
                       /argument 'raw.data' must be 12 bytes for its shape, got 10 bytes/);
  });

  it('GPTQ int4 (qweight/qzeros/scales, original zero - 1 storage) loads exactly; act-order is refused', async () => {
    const rand = rng(62);
    const [E, K, N, gs] = [2, 64, 16, 32], G = K / gs;
    const qweight = Int32Array.from({length: E * K / 8 * N}, () => Math.floor(rand() * 2 ** 32) | 0);
    const qzeros = Int32Array.from({length: E * G * N / 8}, () => Math.floor(rand() * 2 ** 32) | 0);
    const scaleBits = Uint16Array.from({length: E * G * N}, () => 0x2000 + Math.floor(rand() * 0x1000));
    await expectNoLeak(async () => {
      const q = moe.fromGptq({qweight, qzeros, scales: scaleBits, numExperts: E, depth: K, width: N, groupSize: gs});
      const want = new Float32Array(E * K * N);
      for (let e = 0; e < E; e++) {
        for (let k = 0; k < K; k++) {
          for (let n = 0; n < N; n++) {
            const code = (qweight[(e * K / 8 + (k >> 3)) * N + n] >>> (4 * (k & 7))) & 15;
            const g = Math.floor(k / gs);
            const zero = ((qzeros[(e * G + g) * N / 8 + (n >> 3)] >>> (4 * (n & 7))) & 15) + 1;
            want[(e * K + k) * N + n] = refHalf(scaleBits[(e * G + g) * N + n]) * (code - zero);
          }
        }
      }
      const [got] = await readAll(moe.dequantizeExpertWeights(q));
      expect(firstBitMismatch(got, want)).toBe(-1);
      tf.dispose(q as unknown as tf.TensorContainer);
    });
    const gIdx = Int32Array.from({length: K}, (_, k) => (k * 7) % G);
    expectThrowsNoLeak(() => moe.fromGptq({qweight, qzeros, scales: scaleBits, numExperts: E, depth: K, width: N,
                                           groupSize: gs, gIdx}),
                       /act-order \/ desc_act checkpoints are not supported/);
  });

  it('AWQ int4 (qweight/qzeros packed along N in the 0,2,4,6,1,3,5,7 order) loads exactly', async () => {
    const rand = rng(63);
    const [E, K, N, gs] = [2, 64, 16, 64], G = K / gs;
    const reverse = [0, 4, 1, 5, 2, 6, 3, 7];  // column j of a word comes from nibble reverse[j]
    const qweight = Int32Array.from({length: E * K * N / 8}, () => Math.floor(rand() * 2 ** 32) | 0);
    const qzeros = Int32Array.from({length: E * G * N / 8}, () => Math.floor(rand() * 2 ** 32) | 0);
    const scaleBits = Uint16Array.from({length: E * G * N}, () => 0x2000 + Math.floor(rand() * 0x1000));
    await expectNoLeak(async () => {
      const q = moe.fromAwq({qweight, qzeros, scales: scaleBits, numExperts: E, depth: K, width: N, groupSize: gs});
      const want = new Float32Array(E * K * N);
      const nib = (word: number, j: number) => (word >>> (4 * reverse[j])) & 15;
      for (let e = 0; e < E; e++) {
        for (let k = 0; k < K; k++) {
          for (let n = 0; n < N; n++) {
            const g = Math.floor(k / gs);
            const code = nib(qweight[(e * K + k) * N / 8 + (n >> 3)], n & 7);
            const zero = nib(qzeros[(e * G + g) * N / 8 + (n >> 3)], n & 7);
            want[(e * K + k) * N + n] = refHalf(scaleBits[(e * G + g) * N + n]) * (code - zero);
          }
        }
      }
      const [got] = await readAll(moe.dequantizeExpertWeights(q));
      expect(firstBitMismatch(got, want)).toBe(-1);
      tf.dispose(q as unknown as tf.TensorContainer);
    });
    expectThrowsNoLeak(() => moe.fromAwq({qweight, qzeros, scales: scaleBits, numExperts: E, depth: K, width: 12,
                                          groupSize: gs}), /must be multiples of 8/);
  });
});
