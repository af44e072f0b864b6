/**
 * tfjs flags of our webgpu kernels (as tfjs-backend-webgpu's flags_webgpu.ts): set with tf.env().set(name, value)
 * or the TFJS_FLAGS URL parameter like any tfjs flag. Registered once, by src/register_all.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The batchedGemm program preset every webgpu GEMM uses ('' = the heuristic; names: GEMM_PRESETS). */
export const MOE_WEBGPU_GEMM_PRESET = 'MOE_WEBGPU_GEMM_PRESET';
/** The storage-binding limit the expert-range planner uses, in bytes (0 = the device's own limit). */
export const MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES = 'MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES';

export function registerWebGPUFlags(): void {
  const env = tf.env();
  env.registerFlag(MOE_WEBGPU_GEMM_PRESET, () => '');
  env.registerFlag(MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES, () => 0);
}
