/**
 * WebGPU for the specs in Node: navigator.gpu from the `webgpu` package (dawn.node), on SwiftShader's Vulkan
 * driver from Debian's chromium when it is installed (CI installs it), then @tensorflow/tfjs-backend-webgpu.
 * describeWebGPU runs a suite on the 'webgpu' backend and switches back to 'cpu' after it; without an adapter
 * every spec of the suite is reported as skipped with the reason.
 */
import * as tf from '@tensorflow/tfjs-core';
import {existsSync} from 'node:fs';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let initialized: Promise<string | null> | null = null;

/** Makes the 'webgpu' backend available; resolves to null, or to why it cannot be. */
export function initWebGPU(): Promise<string | null> {
  initialized ??= (async () => {
    // The Vulkan loader reads this when dawn.node creates its instance, so it must be set before create().
    if (process.env.VK_ICD_FILENAMES == null && existsSync(SWIFTSHADER_ICD)) {
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    }
    let gpu: {requestAdapter(): Promise<unknown>};
    try {
      const {create, globals} = await import('webgpu');
      Object.assign(globalThis, globals);
      gpu = create([]) as unknown as typeof gpu;
      // tfjs-backend-webgpu only reads navigator.gpu; Node 20 has no navigator (newer Nodes have a getter).
      Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
    } catch (e) {
      return `the webgpu package (dawn.node) did not load: ${(e as Error).message}`;
    }
    const adapter = await gpu.requestAdapter();
    if (adapter == null) {
      return `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'}; ` +
          `install chromium for SwiftShader, see .ci/run)`;
    }
    await import('@tensorflow/tfjs-backend-webgpu');
    const previous = tf.getBackend();
    if (!(await tf.setBackend('webgpu'))) return 'tfjs could not initialize its webgpu backend';
    await tf.setBackend(previous);
    return null;
  })();
  return initialized;
}

/** A describe() whose specs run with 'webgpu' active; pending with the reason when no adapter exists. */
export function describeWebGPU(name: string, body: () => void): void {
  describe(name, () => {
    let reason: string | null = null;
    beforeAll(async () => {
      reason = await initWebGPU();
      if (reason == null) await tf.setBackend('webgpu');
    });
    afterAll(async () => {
      await tf.setBackend('cpu');
    });
    beforeEach(() => {
      if (reason != null) pending(`webgpu unavailable: ${reason}`);
    });
    body();
  });
}

