/** tfjs-moe: Mixture-of-Experts ops, kernels and the FusedMoE layer for TensorFlow.js. */
import './kernels/cpu/register_all.js';
import './gradients/register_all.js';

export {registerHostKernels} from './kernels/cpu/register_all.js';

export {moeTopkSelect} from './ops/moe_topk_select.js';
export {getMoeScores} from './ops/get_moe_scores.js';
export {moePermute} from './ops/moe_permute.js';
export {batchedGemm} from './ops/batched_gemm.js';
export type {BatchedGemmOptions} from './ops/batched_gemm.js';
export {fusedSwigluScale} from './ops/fused_swiglu_scale.js';
export {batchedGemmWeightGrad} from './ops/batched_gemm_weight_grad.js';
export type {BatchedGemmWeightGradOptions} from './ops/batched_gemm_weight_grad.js';
export {moeCombine} from './ops/moe_combine.js';
export type {MoeCombineOptions} from './ops/moe_combine.js';
export {getKernelPath, hasMoeKernel, hasMoeKernels, setKernelPath, usesMoeKernel, withCompositeKernels} from './ops/dispatch.js';
export type {KernelPath} from './ops/dispatch.js';
export * from './kernels/kernel_names.js';
