/**
 * The router's logits x [T,H] @ gateWeight [H,E]. Where our batchedGemm kernel runs on a host backend ('cpu',
 * 'wasm': the same kernel on both, so both give the same logits) they come
 * from it, as one segment (WebAssembly SIMD, the weight packed once), because tfjs's cpu matMul is the slowest
 * stage of a cpu forward (at T = 256 it took longer than both expert GEMMs). On webgpu the same kernel takes it
 * as a one-expert GEMM split over H (split_k_gemm_webgpu.ts, exact) where MOE_WEBGPU_ROUTER_SPLIT_K is on (off by
 * default: see the flag).
 * Elsewhere, and on the composite path, tf.matMul. Both are differentiable (batchedGemm's gradient reaches gateWeight through the reshape).
 */
import * as tf from '@tensorflow/tfjs-core';

import {HOST_KERNEL_BACKENDS} from '../kernels/host_data.js';
import {BatchedGemm} from '../kernels/kernel_names.js';
import {MOE_WEBGPU_ROUTER_SPLIT_K} from '../kernels/webgpu/flags_webgpu.js';
import {ROUTER_SPLIT_K_MAX_TOKENS} from '../kernels/webgpu/split_k_gemm_webgpu.js';
import {batchedGemm} from './batched_gemm.js';
import {usesMoeKernel} from './dispatch.js';

export function routerLogits(x: tf.Tensor2D, gateWeight: tf.Tensor2D): tf.Tensor2D {
  const backend = tf.getBackend();
  // webgpu: up to ROUTER_SPLIT_K_MAX_TOKENS tokens while MOE_WEBGPU_ROUTER_SPLIT_K is on (registered with our
  // webgpu kernels, so read only once usesMoeKernel says they are).
  const ours = usesMoeKernel(BatchedGemm) && (HOST_KERNEL_BACKENDS.includes(backend) ||
      (backend === 'webgpu' && x.shape[0] <= ROUTER_SPLIT_K_MAX_TOKENS &&
       Number(tf.env().get(MOE_WEBGPU_ROUTER_SPLIT_K)) > 0));
  if (!ours) return tf.matMul(x, gateWeight);
  const [numTokens] = x.shape;
  const [hidden, numExperts] = gateWeight.shape;
  return tf.tidy(() => batchedGemm(x, tf.reshape(gateWeight, [1, hidden, numExperts]) as tf.Tensor3D,
                                   tf.tensor1d([0, numTokens], 'int32')));
}
