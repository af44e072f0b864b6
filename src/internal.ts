/**
 * tfjs-moe/internal: building blocks the package's own specs and benchmarks reach into (WebGPU expert sharding and
 * GEMM program presets, the fused SwiGLU GEMM, the layer's forward function, the CUDA runner classes). Not part of
 * the public API: names and behaviour may change in any release. It shares one implementation with the root entry
 * (importing it also registers the kernels).
 */
import './index.js';

export {maxStorageBindingBytes, planExpertShards, setMaxStorageBindingBytes, shardedBatchedGemm} from './kernels/webgpu/expert_shards.js';
export type {ExpertRange} from './kernels/webgpu/expert_shards.js';
export {batchedGemmSwiglu} from './kernels/webgpu/BatchedGemmSwiglu.js';
export {GEMM_PRESETS, setWebGPUGemmPreset} from './kernels/webgpu/batched_gemm_webgpu.js';
export {fusedMoeForward} from './layers/fused_moe_forward.js';
export {selectMoeForward} from './layers/backend_selection.js';
export type {MoeForwardSelection} from './layers/backend_selection.js';
export {CUDA_MOE_WEIGHT_NAMES, CudaFusedMoe, CudaMoeRunner} from './kernels/cuda/cuda_fused_moe.js';
export type {CudaFusedMoeConfig, CudaMoeWeightArrays, CudaMoeWeightName, CudaMoeWeightTensors} from './kernels/cuda/cuda_fused_moe.js';
export {cudaLayerExecutor, registerCudaLayerExecutor} from './kernels/cuda/cuda_layer_executor.js';
