/**
 * tfjs flags of our webgpu kernels (as tfjs-backend-webgpu's flags_webgpu.ts): set with tf.env().set(name, value)
 * or the TFJS_FLAGS URL parameter like any tfjs flag. Registered once, by src/register_all.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The batchedGemm program preset every webgpu GEMM uses ('' = the heuristic; names: GEMM_PRESETS). */
export const MOE_WEBGPU_GEMM_PRESET = 'MOE_WEBGPU_GEMM_PRESET';
/** The storage-binding limit the expert-range planner uses, in bytes (0 = the device's own limit). */
export const MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES = 'MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES';

/**
 * The largest token count whose FusedMoE forward takes the whole-layer decode path (kernels/webgpu/decode; 0 turns
 * it off; at most DECODE_TOKEN_CAP). The default is the crossover measured in BENCHMARKS.md.
 */
export const MOE_WEBGPU_DECODE_MAX_TOKENS = 'MOE_WEBGPU_DECODE_MAX_TOKENS';

/**
 * The tiled grouped GEMMs multiply on subgroup matrices (tensor cores) in f16 with f32 accumulation where the device
 * has the features (half_matrices.ts; a device tfjs creates itself never has them: in Node initWebGPUForNode's
 * `features`): 1.4-1.8x faster on the H200, not exact (4e-4 to 6e-4 relative from the exact result on a Qwen3 layer,
 * docs/semantics.md section 10). Default on; false keeps the exact float32 tiles on every device.
 */
export const MOE_WEBGPU_GEMM_HALF_MATRICES = 'MOE_WEBGPU_GEMM_HALF_MATRICES';

/**
 * A whole-layer forward (decode or prefill) submits the queue once the open pass holds at least this many dispatches (0: tfjs's own
 * WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE, 15). Earlier submissions let the GPU start on a token's first layers while
 * JavaScript enqueues the rest: default 8 (every second layer), measured on the H200 (BENCHMARKS.md, session 2
 * batch B: a 48-layer stack reads each token after 4.67 ms with 8, 4.99 with 4, 8.86 with tfjs's 15).
 */
export const MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES = 'MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES';

/**
 * FusedMoE forwards that the decode path does not take (prefill) replay the op chain's programs, recorded on a
 * layer's first call at each T, encoded directly on the device (kernels/webgpu/prefill; bit for bit the op chain's
 * output, without tfjs's per-program host work). Default on; false runs the op chain through tfjs (A/B).
 */
export const MOE_WEBGPU_PREFILL_REPLAY = 'MOE_WEBGPU_PREFILL_REPLAY';

/**
 * Above 0: the router's logits (routerLogits: x [T,H] @ gate [H,E], T <= 512) on webgpu go through batchedGemm's
 * one-expert split-K program (split_k_gemm_webgpu.ts, exact float32) aiming at this many workgroups (264 measured
 * best), and so does any one-expert float GEMM of at most 512 columns without bias. Default 0 (tf.matMul): on the
 * H200 the program halves the router's GPU time at T = 256 (0.069 -> 0.035 ms) but the layer's throughput got worse
 * (1.035 -> 1.615 ms in session 8's batch B1, 1.85 in its final run): the per-call host work costs more than it saves.
 */
export const MOE_WEBGPU_ROUTER_SPLIT_K = 'MOE_WEBGPU_ROUTER_SPLIT_K';

export function registerWebGPUFlags(): void {
  const env = tf.env();
  env.registerFlag(MOE_WEBGPU_GEMM_PRESET, () => '');
  env.registerFlag(MOE_WEBGPU_GEMM_HALF_MATRICES, () => true);
  env.registerFlag(MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES, () => 0);
  env.registerFlag(MOE_WEBGPU_DECODE_MAX_TOKENS, () => 16);
  env.registerFlag(MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, () => 8);
  env.registerFlag(MOE_WEBGPU_PREFILL_REPLAY, () => true);
  env.registerFlag(MOE_WEBGPU_ROUTER_SPLIT_K, () => 0);
}
