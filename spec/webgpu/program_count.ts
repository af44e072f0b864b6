/**
 * Counts tfjs's own program dispatches during fn (the whole-layer paths count theirs: decodeDispatchCount, ...).
 * Its own module, not webgpu_env.ts, because the browser bundle swaps webgpu_env.ts for its browser version.
 */
import * as tf from '@tensorflow/tfjs-core';

export function countTfjsPrograms<T>(fn: () => T): {result: T, programs: number} {
  const backend = tf.backend() as unknown as {runWebGPUProgram: (...a: unknown[]) => unknown};
  const original = backend.runWebGPUProgram;
  let programs = 0;
  backend.runWebGPUProgram = function(this: unknown, ...a: unknown[]) { programs++; return original.apply(this, a); };
  try {
    return {result: fn(), programs};
  } finally {
    backend.runWebGPUProgram = original;
  }
}
