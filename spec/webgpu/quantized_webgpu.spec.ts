// Packed expert weights on webgpu (SwiftShader in CI, tiny shapes): the dequantization program bit for bit against
// the independent decoder, and the quantized GEMM program against the float64 reference on the dequantized
// weights, every format and orientation, with bias, empty experts and both segment forms. No tensor leaks.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import {setMaxStorageBindingBytes, setWebGPUGemmPreset} from 'tfjs-moe/internal';

import {expectNoLeak, expectThrowsNoLeak, readAll, rng} from '../helpers/util.js';
import {checkGemmCases, firstBitMismatch, GEMM_TOL, makeGemmCase, VARIANTS} from '../ops/expert_formats_cases.js';
import {LAYER_FORMAT_VARIANTS, layerFormatArgs} from '../layers/layer_formats_cases.js';
import {randn, referenceOutput, WeightData} from '../layers/layer_util.js';
import {relError, recordError} from '../helpers/util.js';
import {describeWebGPU} from './webgpu_env.js';

/** SwiftShader compiles each new pipeline on the CPU, seconds each on a busy 2-core machine. */
const SLOW = 600_000;

describeWebGPU('webgpu packed expert weights', () => {
  it('registers the quantized kernels for webgpu', () => {
    expect(tf.getBackend()).toBe('webgpu');
    for (const name of moe.QUANTIZED_MOE_KERNELS) expect(tf.getKernel(name, 'webgpu')).withContext(name).toBeDefined();
  });

  it('dequantizes bit for bit and multiplies within 1e-5 of the reference, every format', async () => {
    // makeGemmCase checks dequantizeExpertWeights (the webgpu program here) against the reference decoder.
    await checkGemmCases('webgpu', 70, 4, {E: 3, K: 70, N: 9, rows: 3}, c => c.run(), rng(70));
  }, SLOW);

  it('fused up-projection + SwiGLU (x row scale) over packed weights, every format', async () => {
    await checkGemmCases('webgpu', 71, 2, {E: 3, K: 70, N: 8, rows: 3}, c => c.run(), rng(71), {swiglu: true});
  }, SLOW);

  it('stream and tiled programs decode every format in their loads (plain, SwiGLU x scale) within 1e-5', async () => {
    // [E,K,N] with N % 8 == 0: the word loads of batched_gemm_snippets.ts. K = 72 ends in a partial stream step
    // (32 codes) and a partial group; int8 per column (group 72) and int8 g6 decode weight by weight (a step or a
    // word spans two groups), the others scale once per step. Both programs forced, one case each; the SwiGLU x
    // scale epilogue on two formats.
    // float32 rides along: the same staged tile loads without a decoder.
    const variants = [...VARIANTS, {label: 'int8 g6', format: 'int8', groupSize: 6}];
    const rand = rng(74);
    // r24x256: the register-blocked tiled program (vec4 lhs reads from shared memory, prefetched loads; 96 threads,
    // K = 72 in five TK steps, the last partial).
    for (const preset of ['stream8', 'tiled32', 'r24x256']) {
      setWebGPUGemmPreset(preset);
      try {
        for (const v of variants as typeof VARIANTS) {
          // The SwiGLU column remap does not depend on the format: two formats cover it (fewer SwiftShader compiles).
          for (const swiglu of v.label === 'float16' || v.label === 'int4 g64 zp' ? [false, true] : [false]) {
            const before = tf.memory().numTensors;
            const c = await makeGemmCase(rand, v, {E: 3, K: 72, N: 16, rows: 3}, 74, 0,
                                         {fixed: {K: 72, N: 16, counts: [3, 0, 2]}, swiglu});
            const [got] = await readAll(c.run());
            c.dispose();
            expect(tf.memory().numTensors).withContext(`${c.ctx}: tensors after the case`).toBe(before);
            const err = relError(got, c.expected);
            recordError(`webgpu ${preset} ${swiglu ? 'batchedGemmSwiglu' : 'batchedGemm'} ${v.label}`, err);
            expect(err).withContext(`${preset} ${c.ctx}`).toBeLessThan(GEMM_TOL);
          }
        }
      } finally {
        setWebGPUGemmPreset(null);
      }
    }
  }, SLOW);

  it('decodes special values exactly: half Inf/NaN/subnormal/-0, bfloat16 extremes, mxfp4 scale bytes 127/255/130',
     async () => {
    await expectNoLeak(async () => {
      const special = [Infinity, -Infinity, NaN, 65504, -(2 ** -24), 2 ** -14, -0, 1 / 3];
      const wants = {
        float16: [Infinity, -Infinity, NaN, 65504, -(2 ** -24), 2 ** -14, -0, 0.333251953125],
        bfloat16: [Infinity, -Infinity, NaN, 65536, -(2 ** -24), 2 ** -14, -0, 0.333984375],
      };
      for (const format of ['float16', 'bfloat16'] as const) {
        const q = moe.quantizeExpertWeightsFromArray(Float32Array.from(special), [1, special.length, 1], format);
        const [got] = await readAll(moe.dequantizeExpertWeights(q));
        expect(firstBitMismatch(got, Float32Array.from(wants[format]))).withContext(format).toBe(-1);
        tf.dispose(q as unknown as tf.TensorContainer);
      }
      // K = 96 (3 blocks) in the [E,N,K] layout, every code 7 (6.0); scale bytes 127 (1), 255 (NaN), 130 (8).
      const q: moe.QuantizedExpertWeights = {
        format: 'mxfp4', shape: [1, 1, 96], transposed: true, groupSize: 32, zeroPoint: false,
        values: tf.tensor3d(new Int32Array(12).fill(0x77777777), [1, 1, 12], 'int32'),
        scales: tf.tensor3d([127 | 255 << 8 | 130 << 16], [1, 1, 1], 'int32'),
      };
      const [got] = await readAll(moe.dequantizeExpertWeights(q));
      const want = [...new Array(32).fill(6), ...new Array(32).fill(NaN), ...new Array(32).fill(48)];
      expect(firstBitMismatch(got, Float32Array.from(want))).toBe(-1);
      tf.dispose(q as unknown as tf.TensorContainer);
    });
  }, SLOW);

  it('quantizeExpertWeights refuses a webgpu tensor (no synchronous read) and points to the async form', async () => {
    const data = Float32Array.of(1, 2, 3, 4.5);
    const w = tf.tensor3d(data, [1, 2, 2]);
    expectThrowsNoLeak(() => moe.quantizeExpertWeights(w, 'int8'), /use quantizeExpertWeightsAsync/);
    await expectNoLeak(async () => {
      const q = await moe.quantizeExpertWeightsAsync(w, 'int8');
      const host = moe.quantizeExpertWeightsFromArray(data, [1, 2, 2], 'int8');
      expect(await q.values.data()).toEqual(await host.values.data());
      expect(await q.scales!.data()).toEqual(await host.scales!.data());
      tf.dispose([q, host] as unknown as tf.TensorContainer);
    });
    w.dispose();
  }, SLOW);

  it('packed weights past the storage-binding limit run in expert ranges (codes, scales, zero points together)',
     async () => {
    // Under a limit of one expert's largest packed tensor every GEMM below runs one expert per range (the cases,
    // and their dequantization check, are made without it: dequantized weights never fit where codes do not).
    let split = 0;
    const limited = (c: {q: moe.QuantizedExpertWeights, run: () => tf.Tensor2D}) => {
      if (c.q.shape[0] >= 2 && c.q.values.size > 0) split++;
      const perExpert = [c.q.values, c.q.scales, c.q.zeroPoints].filter(t => t != null)
          .map(t => t!.size / Math.max(1, t!.shape[0]) * 4);
      setMaxStorageBindingBytes(Math.max(4, ...perExpert));
      try {
        return c.run();
      } finally {
        setMaxStorageBindingBytes(null);
      }
    };
    await checkGemmCases('webgpu ranges', 72, 1, {E: 4, K: 40, N: 6, rows: 3}, limited, rng(72));
    await checkGemmCases('webgpu ranges', 73, 1, {E: 4, K: 40, N: 6, rows: 3}, limited, rng(73), {swiglu: true});
    expect(split).withContext('cases that split into several ranges').toBeGreaterThan(8);
    const q = moe.quantizeExpertWeightsFromArray(new Float32Array(4 * 64 * 8), [4, 64, 8], 'int8');
    setMaxStorageBindingBytes(512);
    try {
      expectThrowsNoLeak(() => moe.dequantizeExpertWeights(q), /exceed one storage binding \(512 bytes\)/);
    } finally {
      setMaxStorageBindingBytes(null);
    }
    tf.dispose(q as unknown as tf.TensorContainer);
  }, SLOW);

  it('FusedMoE in every expert weight format on webgpu matches the reference on the dequantized weights', async () => {
    const H = 12, T = 5, args = {numExperts: 3, topK: 2, moeIntermediateSize: 8, withBias: true};
    for (const [i, v] of LAYER_FORMAT_VARIANTS.filter(f => f.label !== 'int8 g8').entries()) {
      await expectNoLeak(async () => {
        const rand = rng(90 + i);
        const layer = new moe.FusedMoE({...args, ...layerFormatArgs(v), backend: 'webgpu', name: `webgpu_q${i}`})
            .buildFor(H);
        const data: WeightData = {};
        const values: Record<string, tf.Tensor | moe.QuantizedExpertWeights> = {};
        for (const spec of moe.weightSpecs(layer.options, H)) {
          const w = tf.tensor(randn(rand, spec.shape.reduce((a, b) => a * b, 1), spec.name === 'gate_weight' ? 0.8 : 0.4),
                              spec.shape);
          // A synchronous host read is impossible on webgpu: quantize asynchronously, then store as is.
          values[spec.name] = spec.name.endsWith('proj_weight') && v.format !== 'float32' ? await moe
              .quantizeExpertWeightsAsync(w as tf.Tensor3D, v.format, {groupSize: v.groupSize, zeroPoint: v.zeroPoint}) : w;
          if (values[spec.name] !== w) w.dispose();
        }
        layer.setNamedWeights(values);
        tf.dispose(Object.values(values) as unknown as tf.TensorContainer);
        for (const [name, w] of Object.entries(layer.namedWeights())) {
          const t = w instanceof tf.Tensor ? w : moe.dequantizeExpertWeights(w as moe.QuantizedExpertWeights);
          data[name] = await t.data() as Float32Array;
          if (t !== w) t.dispose();
        }
        const x = randn(rand, T * H, 1);
        const input = tf.tensor2d(x, [T, H]);
        const [got] = await readAll(layer.apply(input) as tf.Tensor);
        input.dispose();
        const err = relError(got, referenceOutput(layer.options, data, x, T, H));
        recordError(`FusedMoE webgpu ${v.label}`, err);
        expect(err).withContext(v.label).toBeLessThan(1e-5);
        layer.dispose();
      });
    }
  }, SLOW);

  it('refuses the composite path for packed weights (webgpu int32 ops round through float32) with a clear error', () => {
    const q = moe.quantizeExpertWeightsFromArray(new Float32Array(64), [1, 32, 2], 'int4');
    const lhs = tf.zeros([1, 32]) as tf.Tensor2D, seg = tf.tensor1d([0, 1], 'int32');
    expectThrowsNoLeak(() => moe.withCompositeKernels(() => moe.dequantizeExpertWeights(q)),
                       /no composite path on the 'webgpu' backend/);
    expectThrowsNoLeak(() => moe.withCompositeKernels(() => moe.batchedGemm(lhs, q, seg)),
                       /batchedGemm: packed expert weights have no composite path on the 'webgpu' backend/);
    tf.dispose([lhs, seg, q as unknown as tf.TensorContainer]);
  });
});
