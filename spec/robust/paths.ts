/**
 * The execution paths an edge-value spec runs on: our cpu kernels, the composite path on cpu, our webgpu kernels and
 * the composite path on webgpu (SwiftShader in CI and Node here: keep shapes tiny). No node: imports, so the browser
 * suite can run the same specs (its bundle swaps in the browser webgpu_env).
 */
import * as tf from '@tensorflow/tfjs-core';
import {withCompositeKernels} from 'tfjs-moe';

import {initWebGPU} from '../webgpu/webgpu_env.js';

export interface EdgePath {
  label: string;
  /** 'cpu', 'webgpu', or a host backend carrying the cuda kernels ('tensorflow', see CUDA_EDGE_PATH). */
  backend: string;
  composite: boolean;
  /** Runs fn on this path (the composite path forced when composite). */
  call<T>(fn: () => T): T;
}

export const EDGE_PATHS: EdgePath[] = [
  ['cpu', false], ['cpu', true], ['webgpu', false], ['webgpu', true],
].map(([backend, composite]) => ({
  label: `${backend} ${composite ? 'composite' : 'kernels'}`,
  backend: backend as string,
  composite: composite as boolean,
  call<T>(fn: () => T): T {
    return composite ? withCompositeKernels(fn) : fn();
  },
}));

const SLOW_MS = 300_000;

/** describe(name) once per path; specs inside run with the path's backend active (webgpu: pending without one). */
export function describeOnPaths(name: string, body: (path: EdgePath) => void, paths: EdgePath[] = EDGE_PATHS): void {
  for (const path of paths) {
    describe(`${name} [${path.label}]`, () => {
      let reason: string | null = null;
      let previousTimeout = 0;
      beforeAll(async () => {
        previousTimeout = jasmine.DEFAULT_TIMEOUT_INTERVAL;
        if (path.backend === 'webgpu') {
          jasmine.DEFAULT_TIMEOUT_INTERVAL = SLOW_MS;
          reason = await initWebGPU();
          if (reason != null) return;
        }
        // An earlier suite may leave a backend initialisation in flight (the browser suite re-registers webgpu):
        // settle it first, then switch, and say so if the switch fails.
        await tf.ready();
        if (!(await tf.setBackend(path.backend))) throw new Error(`backend '${path.backend}' failed to initialise`);
        await tf.ready();
      }, SLOW_MS);
      afterAll(async () => {
        jasmine.DEFAULT_TIMEOUT_INTERVAL = previousTimeout;
        await tf.setBackend('cpu');
      });
      beforeEach(async () => {
        if (reason != null) pending(`webgpu unavailable: ${reason} (runs on dawn.node with SwiftShader, as in CI)`);
        await tf.ready();
        if (tf.getBackend() !== path.backend) await tf.setBackend(path.backend);
      });
      body(path);
    });
  }
}
