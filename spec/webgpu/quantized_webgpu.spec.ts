// Packed expert weights on webgpu (SwiftShader in CI, tiny shapes): the dequantization program bit for bit against
// the independent decoder, and the quantized GEMM program against the float64 reference on the dequantized
// weights, every format and orientation, with bias, empty experts and both segment forms. No tensor leaks.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, readAll, rng} from '../helpers/util.js';
import {checkGemmCases, firstBitMismatch} from '../ops/expert_formats_cases.js';
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

  it('refuses the composite path for packed weights (webgpu int32 ops round through float32) with a clear error', () => {
    const q = moe.quantizeExpertWeightsFromArray(new Float32Array(64), [1, 32, 2], 'int4');
    const lhs = tf.zeros([1, 32]) as tf.Tensor2D, seg = tf.tensor1d([0, 1], 'int32');
    expectThrowsNoLeak(() => moe.withCompositeKernels(() => moe.dequantizeExpertWeights(q)),
                       /no composite path on the 'webgpu' backend/);
    expectThrowsNoLeak(() => moe.withCompositeKernels(() => moe.batchedGemmQuantized(lhs, q, seg)),
                       /batchedGemm: packed expert weights have no composite path on the 'webgpu' backend/);
    tf.dispose([lhs, seg, q as unknown as tf.TensorContainer]);
  });
});
