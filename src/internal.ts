/**
 * tfjs-moe/internal: building blocks the package's own specs and benchmarks reach into (WebGPU expert ranges and
 * GEMM program presets and their tfjs flags, the sharded GEMM, the layer's forward functions and backend selection,
 * the CUDA runner classes). Not part of the public API: names and behaviour may change in any release. It shares
 * one implementation with the root entry (importing it also registers the kernels).
 */
import './index.js';

export {shardedBatchedGemm} from './ops/sharded_batched_gemm.js';
export {maxStorageBindingBytes, planExpertShards, setMaxStorageBindingBytes} from './kernels/webgpu/expert_ranges.js';
export type {ExpertRange} from './kernels/webgpu/expert_ranges.js';
export {chooseGemmConfig, GEMM_PRESETS, GEMM_TILE_TABLE, MATRIX_TILE_TABLE, setWebGPUGemmPreset, workgroupBytes} from
  './kernels/webgpu/batched_gemm_config.js';
export type {GemmConfig, GemmShape, MatrixConfig, TileChoice} from './kernels/webgpu/batched_gemm_config.js';
export {MOE_WEBGPU_GEMM_HALF_MATRICES, MOE_WEBGPU_GEMM_PRESET, MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES, MOE_WEBGPU_PREFILL_REPLAY} from
  './kernels/webgpu/flags_webgpu.js';
export {HALF_MATRIX_FEATURES, halfMatrixShape, hoistEnableDirectives} from './kernels/webgpu/half_matrices.js';
export {BatchedGemmProgram} from './kernels/webgpu/batched_gemm_webgpu.js';
export {fusedMoeForward, fusedMoeForwardWithRouting} from './layers/fused_moe_forward.js';
export {selectMoeForward} from './layers/backend_selection.js';
export type {MoeForwardSelection} from './layers/backend_selection.js';
export {CUDA_MOE_WEIGHT_NAMES, CudaActivation, CudaFusedMoe, CudaMoeRunner} from './kernels/cuda/cuda_fused_moe.js';
export type {CudaForwardResult, CudaHostOutput, CudaFusedMoeConfig, CudaMoeWeightArrays, CudaMoeWeightName, CudaMoeWeightTensors} from
    './kernels/cuda/cuda_fused_moe.js';
export {cudaLayerExecutor, registerCudaLayerExecutor} from './kernels/cuda/cuda_layer_executor.js';
export {pooledOutputMarker} from './kernels/cuda/loader.js';
export {unsupportedByCuda} from './executor/layer_schema.js';
export {cpuLayerForward, cpuLayerForwardCount, cpuLayerUnsupportedReason, MOE_CPU_LAYER_FORWARD} from
    './kernels/cpu/layer_forward.js';
export {decodeDispatchCount, decodePlanCount, setWebGPUDecodeTiles} from
    './kernels/webgpu/decode/decode_forward.js';
export {timeEncodedPrograms} from './kernels/webgpu/encoded_forward.js';
export {prefillDeclinedReason, prefillDispatchCount, prefillPlanCount} from
    './kernels/webgpu/prefill/prefill_forward.js';
export type {DecodeTiles} from './kernels/webgpu/decode/decode_programs.js';
export type {DecodeTilesOverride} from './kernels/webgpu/decode/decode_forward.js';
export {DECODE_TUNING, tunedDecodeTiles} from './kernels/webgpu/decode/decode_tuning.js';
export type {DecodeTuning} from './kernels/webgpu/decode/decode_tuning.js';
