/**
 * WebGPU for the specs in Node, through the package's own bootstrap (`initWebGPUForNode` from tfjs-moe/node:
 * dawn.node, SwiftShader from Debian's chromium when no GPU driver exists, then @tensorflow/tfjs-backend-webgpu).
 * describeWebGPU runs a suite on the 'webgpu' backend and switches back to 'cpu' after it; without an adapter
 * every spec of the suite is reported as skipped with the reason.
 */
import * as tf from '@tensorflow/tfjs-core';
import {initWebGPUForNode, SWIFTSHADER_ICD} from 'tfjs-moe/node';

export {SWIFTSHADER_ICD};

let initialized: Promise<string | null> | null = null;

/** Makes the 'webgpu' backend available; resolves to null, or to why it cannot be. */
export function initWebGPU(): Promise<string | null> {
  initialized ??= initWebGPUForNode({setBackend: false})
      .then(status => status.available ? null : `${status.reason} (the test command's setup installs chromium and libvulkan1)`);
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
      if (reason != null) pending(`webgpu unavailable: ${reason} (runs on dawn.node with SwiftShader, as in CI)`);
    });
    body();
  });
}
