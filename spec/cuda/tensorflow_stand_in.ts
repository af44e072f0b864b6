/**
 * tfjs-node-gpu cannot be installed on these machines (its install downloads libtensorflow), so its 'tensorflow'
 * backend is stood in for by tfjs's cpu backend registered under that name, with every stock cpu kernel copied
 * over. Like the real one it keeps tensors in host memory, which is all our 'tensorflow' kernels rely on.
 */
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS} from 'tfjs-moe';

export const TF_BACKEND = 'tensorflow';

/** Registers a host-memory backend named `name` (idempotent); our MoE kernels are not copied. */
export function registerHostStandIn(name: string = TF_BACKEND): void {
  if (tf.findBackendFactory(name) != null) return;
  tf.registerBackend(name, () => new MathBackendCPU(), -1);  // never chosen as the default
  for (const config of tf.getKernelsForBackend('cpu')) {
    if ((ALL_MOE_KERNELS as readonly string[]).includes(config.kernelName)) continue;
    tf.registerKernel({...config, backendName: name});
  }
}

/** Runs fn with `name` as the active backend, restoring the previous one (awaits fn). */
export async function onBackend<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const previous = tf.getBackend();
  if (!(await tf.setBackend(name))) throw new Error(`backend '${name}' failed to initialise`);
  try {
    return await fn();
  } finally {
    await tf.setBackend(previous);
  }
}
