/**
 * The first expert GEMM with SwiGLU x scale in its epilogue: fusedSwigluScale(batchedGemm(lhs, rhs, offsets, bias),
 * scale) as one program, for the FusedMoE forward on webgpu (fewer programs per forward: decode is bound by the
 * JavaScript cost of each dispatch). A webgpu-only kernel, not an op of the public API: its math is those two
 * documented ops' composition, and the forward calls it only where both would run our webgpu kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelConfig, KernelFunc, Tensor1D, Tensor2D, Tensor3D, TensorInfo} from '@tensorflow/tfjs-core';

import {BatchedGemmProgram, chooseGemmConfig, GemmShape} from './batched_gemm_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export const BatchedGemmSwiglu = 'MoeBatchedGemmSwiglu';

interface BatchedGemmSwigluInputs {
  lhs: TensorInfo;      // [R,K]
  rhs: TensorInfo;      // [E,K,2I]
  offsets: TensorInfo;  // int32 [E+1]
  bias?: TensorInfo;    // [E,2I]
  scale?: TensorInfo;   // [R]
}

function batchedGemmSwigluWebGPU(args: {inputs: BatchedGemmSwigluInputs, backend: WebGPUBackendLike}): TensorInfo {
  const {inputs: {lhs, rhs, offsets, bias, scale}, backend} = args;
  const [numRows, depth] = lhs.shape;
  const [numExperts, , width] = rhs.shape;
  const shape: GemmShape = {numRows, depth, width, numExperts, transposeRhs: false, hasBias: bias != null,
    swiglu: true, hasScale: scale != null};
  const program = new BatchedGemmProgram(shape, chooseGemmConfig(shape, backend.device.limits.maxComputeWorkgroupStorageSize));
  const inputs = [lhs, rhs, offsets, ...(bias != null ? [bias] : []), ...(scale != null ? [scale] : [])];
  return backend.runWebGPUProgram(program, inputs, 'float32', [{type: 'int32', data: [program.colTiles]}]);
}

export const batchedGemmSwigluWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemmSwiglu,
  backendName: 'webgpu',
  kernelFunc: batchedGemmSwigluWebGPU as unknown as KernelFunc,
};

/**
 * Whether the fused program can replace batchedGemm + fusedSwigluScale in this call: webgpu active with our
 * kernel registered, no forced composite path, no gradient tape (the fused kernel has no gradient), and shapes
 * that the program takes (non-empty, K % 4 == 0 or the scalar tiles).
 */
export function canFuseSwiglu(numRows: number, depth: number, width: number, numExperts: number,
                              compositeForced: boolean): boolean {
  if (compositeForced || tf.getBackend() !== 'webgpu' || tf.getKernel(BatchedGemmSwiglu, 'webgpu') == null) return false;
  if ((tf.engine() as unknown as {state: {gradientDepth: number}}).state.gradientDepth > 0) return false;
  return numRows > 0 && depth > 0 && numExperts > 0 && width > 0 && width % 2 === 0;
}

/** out [R,I] = silu(h[:, :I]) * h[:, I:] * scale[r], h = lhs @ rhs[expert of row] + bias (inputs already checked). */
export function batchedGemmSwiglu(lhs: Tensor2D, rhs: Tensor3D, expertOffsets: Tensor1D, bias: Tensor2D | null,
                                  scale: Tensor1D | null): Tensor2D {
  const inputs: Record<string, tf.Tensor> = {lhs, rhs, offsets: expertOffsets};
  if (bias != null) inputs.bias = bias;
  if (scale != null) inputs.scale = scale;
  return tf.engine().runKernel(BatchedGemmSwiglu, inputs, {}) as Tensor2D;
}
