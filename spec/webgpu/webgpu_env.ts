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

interface PipelineDevice {
  createComputePipeline(d: unknown): unknown;
  createComputePipelineAsync(d: unknown): Promise<unknown>;
  createShaderModule(d: unknown): unknown;
}
/**
 * SPEC_TIMING (scripts/run-specs.mjs): counts the device's shader modules and pipelines and the seconds spent
 * creating them (SwiftShader compiles each new pipeline on the CPU: most of a webgpu spec's time), in
 * globalThis.__moePipelineStats, which the reporter prints per spec.
 */
function countPipelines(device: PipelineDevice): void {
  const g = globalThis as {__moePipelineStats?: {pipelines: number, modules: number, seconds: number}};
  if ((device as {__moeCounted?: boolean}).__moeCounted) return;
  const stats = g.__moePipelineStats ??= {pipelines: 0, modules: 0, seconds: 0};
  (device as {__moeCounted?: boolean}).__moeCounted = true;
  const timed = <A, R>(f: (a: A) => R, count: 'pipelines' | 'modules') => (a: A): R => {
    const t0 = performance.now();
    try {
      return f(a);
    } finally {
      stats[count]++;
      stats.seconds += (performance.now() - t0) / 1000;
    }
  };
  device.createComputePipeline = timed(device.createComputePipeline.bind(device), 'pipelines');
  device.createShaderModule = timed(device.createShaderModule.bind(device), 'modules');
  const async = device.createComputePipelineAsync.bind(device);
  device.createComputePipelineAsync = d => { stats.pipelines++; return async(d); };
}

/** A describe() whose specs run with 'webgpu' active; pending with the reason when no adapter exists. */
export function describeWebGPU(name: string, body: () => void): void {
  describe(name, () => {
    let reason: string | null = null;
    beforeAll(async () => {
      reason = await initWebGPU();
      if (reason == null) {
        await tf.setBackend('webgpu');
        if (process.env.SPEC_TIMING) countPipelines((tf.backend() as unknown as {device: PipelineDevice}).device);
      }
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
