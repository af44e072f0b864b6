// The gradient of every MoE kernel (registered by src/register_all.ts). Gradients are
// backend-independent in tfjs: they are written with ops (ours and tfjs's), which dispatch to whatever kernels
// the active backend has.
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig} from '@tensorflow/tfjs-core';

import {batchedGemmGradConfig} from './batched_gemm_grad.js';
import {batchedGemmSwigluGradConfig} from './batched_gemm_swiglu_grad.js';
import {fusedSwigluScaleGradConfig} from './fused_swiglu_scale_grad.js';
import {moeCombineGradConfig} from './moe_combine_grad.js';
import {moePermuteGradConfig} from './moe_permute_grad.js';
import {getMoeScoresGradConfig, moeTopkSelectGradConfig} from './routing_grad.js';

export const moeGradConfigs: readonly GradConfig[] = [
  moeTopkSelectGradConfig, getMoeScoresGradConfig, moePermuteGradConfig, batchedGemmGradConfig,
  fusedSwigluScaleGradConfig, moeCombineGradConfig, batchedGemmSwigluGradConfig,
];

export function registerMoeGradients(): void {
  for (const config of moeGradConfigs) tf.registerGradient(config);
}
