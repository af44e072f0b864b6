/**
 * Registers our CUDA kernels for a host-memory backend, by default tfjs-node-gpu's 'tensorflow' (which cannot
 * load custom TF ops, so the kernels move host data through the addon). Explicit rather than on import: it
 * needs the addon, and a user without CUDA must not be affected.
 */
import * as tf from '@tensorflow/tfjs-core';

import {ALL_MOE_KERNELS} from '../kernel_names.js';
import {describeValue} from '../describe_value.js';
import {batchedGemmCudaConfig} from './BatchedGemm.js';
import {batchedGemmSwigluCudaConfig} from './BatchedGemmSwiglu.js';
import {fusedSwigluScaleCudaConfig} from './FusedSwigluScale.js';
import {getMoeScoresCudaConfig} from './GetMoeScores.js';
import {cudaStatus} from './loader.js';
import {moeCombineCudaConfig} from './MoeCombine.js';
import {moePermuteCudaConfig} from './MoePermute.js';
import {moeTopkSelectCudaConfig} from './MoeTopkSelect.js';

const CONFIGS = [
  moeTopkSelectCudaConfig, getMoeScoresCudaConfig, moePermuteCudaConfig, batchedGemmCudaConfig,
  fusedSwigluScaleCudaConfig, moeCombineCudaConfig, batchedGemmSwigluCudaConfig,
];

/**
 * Registers the MoE forward kernels (ALL_MOE_KERNELS) on `backendName` (default 'tensorflow'), replacing kernels of ours already
 * registered there. Throws, registering nothing, when CUDA is unavailable (the message carries
 * cudaStatus().reason). Returns the kernel names registered.
 */
export function registerCudaKernels(backendName = 'tensorflow'): string[] {
  if (typeof backendName !== 'string' || backendName.length === 0) {
    throw new Error(`registerCudaKernels: argument 'backendName' must be a non-empty string, got ${describeValue(backendName)}`);
  }
  const status = cudaStatus();
  if (!status.available) {
    throw new Error(`registerCudaKernels: CUDA is not available (${status.code}): ${status.reason}`);
  }
  // Kernels of ours already there (e.g. the host TypedArray kernels of registerHostKernels) are replaced.
  for (const name of ALL_MOE_KERNELS) {
    if (tf.getKernel(name, backendName) != null) tf.unregisterKernel(name, backendName);
  }
  for (const config of CONFIGS) tf.registerKernel(config(backendName));
  return [...ALL_MOE_KERNELS];
}

/** Removes what registerCudaKernels registered on backendName (kernels of that name that are absent are skipped). */
export function unregisterCudaKernels(backendName = 'tensorflow'): void {
  for (const name of ALL_MOE_KERNELS) {
    if (tf.getKernel(name, backendName) != null) tf.unregisterKernel(name, backendName);
  }
}
