/**
 * initWebGPUForNode (tfjs-moe/node), the one dawn.node bootstrap of the package, the demos, the benchmarks and
 * these specs: what it reports about the adapter, the adapter choice, and leaving the active backend alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import {initWebGPUForNode} from 'tfjs-moe/node';

import {initWebGPU} from './webgpu_env.js';

describe('initWebGPUForNode', () => {
  let reason: string | null = null;
  beforeAll(async () => {
    reason = await initWebGPU();
  });
  beforeEach(() => {
    if (reason != null) pending(`webgpu unavailable: ${reason}`);
  });

  it('reports the adapter, its limits and features, and keeps the active backend with setBackend: false', async () => {
    await tf.setBackend('cpu');
    const status = await initWebGPUForNode({setBackend: false});
    expect(status.available).toBe(true);
    expect(tf.getBackend()).toBe('cpu');
    expect(status.adapterName).toBeTruthy();
    expect(typeof status.software).toBe('boolean');
    expect(status.limits?.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(Array.isArray(status.features)).toBe(true);
  });

  it("adapter: 'hardware' refuses a software adapter with the reason, and accepts a hardware one", async () => {
    const any = await initWebGPUForNode({setBackend: false});
    const hardware = await initWebGPUForNode({adapter: 'hardware', setBackend: false});
    if (any.software) {
      expect(hardware.available).toBe(false);
      expect(hardware.reason).toBe(`only a software adapter (${any.adapterName})`);
    } else {
      expect(hardware.available).toBe(true);
    }
    expect(tf.getBackend()).toBe('cpu');
  });

  it('makes webgpu the active backend by default', async () => {
    try {
      const status = await initWebGPUForNode();
      expect(status.available).toBe(true);
      expect(tf.getBackend()).toBe('webgpu');
      // The default `features`: the tfjs device has subgroups where the adapter lists them.
      const device = (tf.backend() as unknown as {device: {features: {has(f: string): boolean}}}).device;
      expect(device.features.has('subgroups')).toBe(status.features?.includes('subgroups') === true);
    } finally {
      await tf.setBackend('cpu');
    }
  });
});
