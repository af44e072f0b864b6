/**
 * Browser replacement for spec/webgpu/webgpu_env.ts (the bundler swaps it in): the page's navigator.gpu is real, so
 * there is nothing to install. Unlike in Node, a missing adapter FAILS the suite: the browser run exists to prove
 * WebGPU, and a pending webgpu suite there would hide exactly the regression it is for.
 */
import * as tf from '@tensorflow/tfjs-core';

export const SWIFTSHADER_ICD = '';

let initialized: Promise<string | null> | null = null;

/** Resolves to null when the 'webgpu' backend is usable, or to why it is not. */
export function initWebGPU(): Promise<string | null> {
  initialized ??= (async () => {
    const gpu = (navigator as Navigator & {gpu?: {requestAdapter(): Promise<unknown>}}).gpu;
    if (gpu == null) return 'navigator.gpu is undefined (chromium needs --enable-unsafe-webgpu on Linux)';
    if (await gpu.requestAdapter() == null) return 'navigator.gpu.requestAdapter() returned null';
    if (tf.findBackendFactory('webgpu') == null) {
      return 'tfjs-backend-webgpu did not register (no navigator.gpu at import)';
    }
    const previous = tf.getBackend();
    if (!(await tf.setBackend('webgpu'))) return 'tfjs could not initialize its webgpu backend';
    await tf.setBackend(previous);
    return null;
  })();
  return initialized;
}

export function describeWebGPU(name: string, body: () => void): void {
  describe(name, () => {
    beforeAll(async () => {
      const reason = await initWebGPU();
      if (reason != null) throw new Error(`webgpu unavailable in the browser: ${reason}`);
      await tf.setBackend('webgpu');
    });
    afterAll(async () => {
      await tf.setBackend('cpu');
    });
    body();
  });
}

