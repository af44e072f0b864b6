// What the rest of the browser suite relies on: a real WebGPU adapter in the page, tfjs's webgpu backend on it, and
// the package's browser bundle with its kernels registered for both backends.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

describe('browser environment', () => {
  it('exposes navigator.gpu with an adapter (WebGPU is not silently missing)', async () => {
    type AdapterLike = {info?: Record<string, string>};
    const gpu = (navigator as Navigator & {gpu?: {requestAdapter(): Promise<AdapterLike | null>}}).gpu;
    expect(gpu).withContext('navigator.gpu').toBeDefined();
    const adapter = await gpu!.requestAdapter();
    expect(adapter).withContext('navigator.gpu.requestAdapter()').not.toBeNull();
    // GPUAdapterInfo's fields are getters: JSON.stringify sees none.
    const info = adapter?.info as Record<string, string> | undefined;
    const fields = ['vendor', 'architecture', 'device', 'description'].map(k => info?.[k]);
    console.log(`WebGPU adapter: ${fields.join(' / ')}`);
  });

  it('initialises tfjs\'s webgpu backend and runs a matMul on it, read asynchronously', async () => {
    expect(await tf.setBackend('webgpu')).toBeTrue();
    try {
      const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
      const b = tf.tensor2d([1, 0, 0, 1, 1, 1], [3, 2]);
      const c = tf.matMul(a, b);
      expect(Array.from(await c.data())).toEqual([4, 5, 10, 11]);
      tf.dispose([a, b, c]);
    } finally {
      await tf.setBackend('cpu');
    }
  });

  it('has the package\'s kernels registered for cpu and webgpu', () => {
    expect(moe.hasMoeKernels(moe.ALL_MOE_KERNELS, 'cpu')).toBeTrue();
    expect(moe.hasMoeKernels(moe.ALL_MOE_KERNELS, 'webgpu')).toBeTrue();
    expect(typeof moe.FusedMoE).toBe('function');
  });
});
