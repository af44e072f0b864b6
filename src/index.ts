/** tfjs-moe: Mixture-of-Experts ops, kernels and the FusedMoE layer for TensorFlow.js. */
import './register_all.js';

export {registerHostKernels} from './kernels/cpu/register_all.js';
export {wasmReady, wasmStatus} from './kernels/wasm/runtime.js';
export type {SimdLevel, WasmStatus} from './kernels/wasm/runtime.js';
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
export {batchedGemmWeightGrad} from './ops/batched_gemm_weight_grad.js';
export type {BatchedGemmWeightGradOptions} from './ops/batched_gemm_weight_grad.js';
export {moeCombine} from './ops/moe_combine.js';
export type {MoeCombineOptions} from './ops/moe_combine.js';
export {getKernelPath, hasMoeKernel, hasMoeKernels, MOE_KERNEL_PATH, setKernelPath, usesMoeKernel, withCompositeKernels} from
    './ops/dispatch.js';
export type {KernelPath} from './ops/dispatch.js';
export * from './kernels/kernel_names.js';
export {FusedMoE} from './layers/fused_moe.js';
export type {FusedMoEArgs, FusedMoEOptions, FusedMoEWeights, FusedMoEWeightName, Initializer, InitializerSpec, MoeComputeDtype, MoeLayerBackend, TopkMethod,
  WeightSpec} from './layers/fused_moe_config.js';
export {OPTION_TABLE, weightSpecs} from './executor/layer_schema.js';
export type {OptionSpec} from './executor/layer_schema.js';
export type {ExpertWeightName, RoutingWeightOn} from './executor/layer_schema.js';
export type {MoeTopkSelectOptions} from './ops/moe_topk_select.js';
export {getMoeLayerExecutor, registerMoeLayerExecutor, unregisterMoeLayerExecutor} from './executor/layer_executor.js';
export type {DeviceActivation, MoeDeviceForwardFn, MoeForwardContext, MoeForwardFn, MoeForwardResult, MoeLayerExecutor} from
    './executor/layer_executor.js';
export {routeTokens} from './layers/fused_moe_forward.js';
export type {LoadBalancingOptions} from './layers/load_balancing.js';
export {loadHuggingFaceMoe} from './io/hf_import.js';
export type {HfWeights, LoadHuggingFaceMoeOptions} from './io/hf_import.js';
export {familyOf as huggingFaceMoeFamily, hfMoeSpec as huggingFaceMoeSpec} from './io/hf_families.js';
export type {Config as HfConfig, HfFamily, HfMoeSpec, HfNaming} from './io/hf_families.js';
export {decodeSafetensor, isRawSafetensor, parseSafetensorsHeader, readSafetensors} from './io/safetensors.js';
export type {RawSafetensor, ReadSafetensorsOptions, SafetensorsDtype, SafetensorsEntry, SafetensorsHeader} from './io/safetensors.js';
// CUDA (optional native addon, `npx tfjs-moe-build-cuda`); browser-safe: nothing Node-specific runs until called.
export {cudaStatus} from './kernels/cuda/loader.js';
export type {CudaStatus, CudaUnavailableCode} from './kernels/cuda/loader.js';
export {registerCudaKernels, unregisterCudaKernels} from './kernels/cuda/register_all.js';
export {CudaActivation} from './kernels/cuda/cuda_fused_moe.js';
export type {CudaComputeDtype} from './kernels/cuda/cuda_fused_moe.js';
export {MOE_CUDA_FUSE, MOE_CUDA_GEMM_TILES, MOE_CUDA_INT4_MMA, MOE_CUDA_PDL, MOE_CUDA_SPLIT_FORWARD, MOE_CUDA_WGMMA} from './kernels/cuda/flags_cuda.js';
export {MOE_WEBGPU_DECODE_MAX_TOKENS, MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, MOE_WEBGPU_GEMM_HALF_MATRICES}
  from './kernels/webgpu/flags_webgpu.js';
export {setWebGPUDecodeMaxTokens, webgpuDecodeMaxTokens} from './kernels/webgpu/decode/decode_forward.js';
export * from './formats.js';
// Internals the specs and benchmarks use (sharding, GEMM presets, CUDA runners) are in 'tfjs-moe/internal'.
