/** tfjs-moe: Mixture-of-Experts ops, kernels and the FusedMoE layer for TensorFlow.js. */
import './register_all.js';

export {registerHostKernels} from './kernels/cpu/register_all.js';
export {wasmReady, wasmStatus} from './kernels/wasm/runtime.js';
export type {WasmStatus} from './kernels/wasm/runtime.js';
export {clearWasmWeightCache, wasmWeightCacheBytes} from './kernels/wasm/weight_cache.js';

export {moeTopkSelect} from './ops/moe_topk_select.js';
export {getMoeScores} from './ops/get_moe_scores.js';
export {moePermute} from './ops/moe_permute.js';
export type {MoePermuteOptions} from './ops/moe_permute.js';
export {batchedGemm} from './ops/batched_gemm.js';
export type {BatchedGemmOptions} from './ops/batched_gemm.js';
export {fusedSwigluScale} from './ops/fused_swiglu_scale.js';
export type {SwigluActivationOptions} from './ops/fused_swiglu_scale.js';
export {batchedGemmSwiglu} from './ops/batched_gemm_swiglu.js';
export type {BatchedGemmSwigluOptions} from './ops/batched_gemm_swiglu.js';
export {shardedBatchedGemm} from './ops/sharded_batched_gemm.js';
export {batchedGemmWeightGrad} from './ops/batched_gemm_weight_grad.js';
export type {BatchedGemmWeightGradOptions} from './ops/batched_gemm_weight_grad.js';
export {moeCombine} from './ops/moe_combine.js';
export type {MoeCombineOptions} from './ops/moe_combine.js';
export {getKernelPath, hasMoeKernel, hasMoeKernels, MOE_KERNEL_PATH, setKernelPath, usesMoeKernel, withCompositeKernels} from
    './ops/dispatch.js';
export type {KernelPath} from './ops/dispatch.js';
export * from './kernels/kernel_names.js';
export {maxStorageBindingBytes, planExpertShards, setMaxStorageBindingBytes} from './kernels/webgpu/expert_ranges.js';
export type {ExpertRange} from './kernels/webgpu/expert_ranges.js';
export {GEMM_PRESETS, GEMM_TILE_TABLE, setWebGPUGemmPreset} from './kernels/webgpu/batched_gemm_config.js';
export type {GemmConfig, TileChoice} from './kernels/webgpu/batched_gemm_config.js';
export {MOE_WEBGPU_GEMM_PRESET, MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES} from './kernels/webgpu/flags_webgpu.js';
export {FusedMoE} from './layers/fused_moe.js';
export type {FusedMoEArgs, FusedMoEOptions, FusedMoEWeights, FusedMoEWeightName, InitializerSpec, MoeComputeDtype, MoeLayerBackend, TopkMethod,
  WeightSpec} from './layers/fused_moe_config.js';
export {OPTION_TABLE, weightSpecs} from './executor/layer_schema.js';
export type {OptionSpec} from './executor/layer_schema.js';
export {getMoeLayerExecutor, registerMoeLayerExecutor, unregisterMoeLayerExecutor} from './executor/layer_executor.js';
export type {MoeForwardContext, MoeForwardFn, MoeForwardResult, MoeLayerExecutor} from './executor/layer_executor.js';
export {selectMoeForward} from './layers/backend_selection.js';
export type {MoeForwardSelection} from './layers/backend_selection.js';
export {fusedMoeForward, fusedMoeForwardWithRouting, routeTokens} from './layers/fused_moe_forward.js';
export type {LoadBalancingOptions} from './layers/load_balancing.js';
export {loadHuggingFaceMoe} from './io/hf_import.js';
export type {HfWeights, LoadHuggingFaceMoeOptions} from './io/hf_import.js';
export {familyOf as huggingFaceMoeFamily, hfMoeSpec as huggingFaceMoeSpec} from './io/hf_families.js';
export type {HfFamily, HfMoeSpec} from './io/hf_families.js';
export {decodeSafetensor, parseSafetensorsHeader, readSafetensors} from './io/safetensors.js';
export type {ReadSafetensorsOptions, SafetensorsDtype, SafetensorsEntry, SafetensorsHeader} from './io/safetensors.js';
// CUDA (optional native addon, `npm run build:cuda`); browser-safe: nothing Node-specific runs until called.
export {cudaStatus} from './kernels/cuda/loader.js';
export type {CudaStatus, CudaUnavailableCode} from './kernels/cuda/loader.js';
export {registerCudaKernels, unregisterCudaKernels} from './kernels/cuda/register_all.js';
export {CUDA_MOE_WEIGHT_NAMES, CudaActivation, CudaFusedMoe, CudaMoeRunner} from './kernels/cuda/cuda_fused_moe.js';
export {MOE_CUDA_GEMM_TILES, MOE_CUDA_PDL} from './kernels/cuda/flags_cuda.js';
export {cudaLayerExecutor, registerCudaLayerExecutor} from './kernels/cuda/cuda_layer_executor.js';
export type {CudaComputeDtype, CudaForwardResult, CudaFusedMoeConfig, CudaHostOutput, CudaMoeWeightArrays, CudaMoeWeightName, CudaMoeWeightTensors} from './kernels/cuda/cuda_fused_moe.js';
export * from './formats.js';
