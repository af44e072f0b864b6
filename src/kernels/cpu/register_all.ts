// The cpu kernels of ours (registered for 'cpu' by src/register_all.ts), and a way for other
// host-memory backends (e.g. tfjs-node's 'tensorflow', whose tensors read back synchronously) reuse them.
import * as tf from '@tensorflow/tfjs-core';
import type {KernelConfig} from '@tensorflow/tfjs-core';

export {HOST_KERNEL_BACKENDS} from '../host_data.js';

import {batchedGemmConfig} from './BatchedGemm.js';
import {quantizedHostKernelConfigs} from './BatchedGemmQuantized.js';
import {batchedGemmSwigluConfig} from './BatchedGemmSwiglu.js';
import {batchedGemmWeightGradConfig} from './BatchedGemmWeightGrad.js';
import {fusedSwigluScaleConfig} from './FusedSwigluScale.js';
import {getMoeScoresConfig} from './GetMoeScores.js';
import {moeCombineConfig} from './MoeCombine.js';
import {moePermuteConfig} from './MoePermute.js';
import {moeTopkSelectConfig} from './MoeTopkSelect.js';

export const hostKernelConfigs: readonly KernelConfig[] = [
  moeTopkSelectConfig, getMoeScoresConfig, moePermuteConfig, batchedGemmConfig, fusedSwigluScaleConfig,
  moeCombineConfig, batchedGemmSwigluConfig, batchedGemmWeightGradConfig, ...quantizedHostKernelConfigs,
];

/**
 * Registers the host (TypedArray) kernels under `backendName`. A kernel already registered there (by this call
 * or by a faster backend-specific one) is left in place, so calling this twice is harmless.
 */
export function registerHostKernels(backendName: string): void {
  for (const config of hostKernelConfigs) {
    if (tf.getKernel(config.kernelName, backendName) == null) tf.registerKernel({...config, backendName});
  }
}
