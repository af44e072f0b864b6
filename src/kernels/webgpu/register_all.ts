// Every webgpu kernel of ours and the flags they read (registered by src/register_all.ts). Registering for
// 'webgpu' needs nothing from @tensorflow/tfjs-backend-webgpu: the kernels run once a user has that backend active.
import {registerKernel} from '@tensorflow/tfjs-core';

import {batchedGemmWebGPUConfig} from './BatchedGemm.js';
import {quantizedWebGPUKernelConfigs} from './BatchedGemmQuantized.js';
import {batchedGemmSwigluWebGPUConfig} from './BatchedGemmSwiglu.js';
import {sweepExpertRangeCopies} from './expert_ranges.js';
import {registerWebGPUFlags} from './flags_webgpu.js';
import {fusedSwigluScaleWebGPUConfig} from './FusedSwigluScale.js';
import {getMoeScoresWebGPUConfig} from './GetMoeScores.js';
import {moeCombineWebGPUConfig} from './MoeCombine.js';
import {moePermuteWebGPUConfig} from './MoePermute.js';
import {moeTopkSelectWebGPUConfig} from './MoeTopkSelect.js';

import {registerWeightCacheSweeper} from '../weight_caches.js';

export function registerWebGPUKernels(): void {
  registerWebGPUFlags();
  for (const config of [moeTopkSelectWebGPUConfig, getMoeScoresWebGPUConfig, moePermuteWebGPUConfig,
                        batchedGemmWebGPUConfig, fusedSwigluScaleWebGPUConfig, moeCombineWebGPUConfig,
                        batchedGemmSwigluWebGPUConfig, ...quantizedWebGPUKernelConfigs]) {
    registerKernel(config);
  }
  registerWeightCacheSweeper(sweepExpertRangeCopies);
}
