// Registers every webgpu kernel of ours with tfjs (imported for its side effect by src/index.ts). Registering for
// 'webgpu' needs nothing from @tensorflow/tfjs-backend-webgpu: the kernels run once a user has that backend active.
import {registerKernel} from '@tensorflow/tfjs-core';

import {batchedGemmWebGPUConfig} from './BatchedGemm.js';
import {batchedGemmSwigluWebGPUConfig} from './BatchedGemmSwiglu.js';
import {fusedSwigluScaleWebGPUConfig} from './FusedSwigluScale.js';
import {getMoeScoresWebGPUConfig} from './GetMoeScores.js';
import {moeCombineWebGPUConfig} from './MoeCombine.js';
import {moePermuteWebGPUConfig} from './MoePermute.js';
import {moeTopkSelectWebGPUConfig} from './MoeTopkSelect.js';

for (const config of [moeTopkSelectWebGPUConfig, getMoeScoresWebGPUConfig, moePermuteWebGPUConfig,
                      batchedGemmWebGPUConfig, fusedSwigluScaleWebGPUConfig, moeCombineWebGPUConfig,
                      batchedGemmSwigluWebGPUConfig]) {
  registerKernel(config);
}
