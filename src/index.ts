/** tfjs-moe: Mixture-of-Experts ops, kernels and the FusedMoE layer for TensorFlow.js. */
import './kernels/cpu/register_all.js';

export {registerHostKernels} from './kernels/cpu/register_all.js';

export {moeTopkSelect} from './ops/moe_topk_select.js';
export {getMoeScores} from './ops/get_moe_scores.js';
export {moePermute} from './ops/moe_permute.js';
export {batchedGemm} from './ops/batched_gemm.js';
export type {BatchedGemmOptions} from './ops/batched_gemm.js';
export {fusedSwigluScale} from './ops/fused_swiglu_scale.js';
export {moeCombine} from './ops/moe_combine.js';
export type {MoeCombineOptions} from './ops/moe_combine.js';
export {getKernelPath, hasMoeKernel, hasMoeKernels, setKernelPath, withCompositeKernels} from './ops/dispatch.js';
export type {KernelPath} from './ops/dispatch.js';
export * from './kernels/kernel_names.js';
// CUDA (optional native addon, `npm run build:cuda`); browser-safe: nothing Node-specific runs until called.
export {cudaStatus} from './kernels/cuda/loader.js';
export type {CudaStatus, CudaUnavailableCode} from './kernels/cuda/loader.js';
export {registerCudaKernels, unregisterCudaKernels} from './kernels/cuda/register_all.js';
export {CUDA_MOE_WEIGHT_NAMES, CudaFusedMoe, CudaMoeRunner} from './kernels/cuda/cuda_fused_moe.js';
export type {CudaComputeDtype, CudaFusedMoeConfig, CudaMoeWeightArrays, CudaMoeWeightName, CudaMoeWeightTensors} from './kernels/cuda/cuda_fused_moe.js';
