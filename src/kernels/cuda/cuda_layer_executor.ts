/**
 * The FusedMoE layer's 'cuda' backend: a MoeLayerExecutor (executor/layer_executor.ts) that runs the whole forward
 * natively through CudaFusedMoe, keeping each layer's weights resident on the GPU (keyed by the calling layer,
 * re-uploaded when a weight's data changes, freed when the layer is disposed). Registered by src/register_all.ts
 * (browser-safe: availability() is the first thing that touches Node). When the layer reads the routing (load
 * balancing: context.needsRouting) the forward also returns the ids it routed with, so the layer does not route again.
 * forwardDevice (FusedMoE.applyDevice) keeps the activations on the GPU: CudaActivation in, CudaActivation out.
 */
import type * as tf from '@tensorflow/tfjs-core';

import {MoeForwardResult, MoeLayerExecutor, registerMoeLayerExecutor} from '../../executor/layer_executor.js';
import {FusedMoEOptions, FusedMoEWeights, nativeLayerConfig, unsupportedByCuda} from '../../executor/layer_schema.js';
import {CudaActivation, CudaFusedMoe, CudaFusedMoeConfig, CudaMoeWeightTensors} from './cuda_fused_moe.js';
import {cudaStatus} from './loader.js';

function layerConfig(hidden: number, o: FusedMoEOptions): CudaFusedMoeConfig {
  return nativeLayerConfig(hidden, o) as unknown as CudaFusedMoeConfig;
}

function layerWeights(w: FusedMoEWeights): CudaMoeWeightTensors {
  return {
    gateWeight: w.gate_weight, gateBias: w.gate_bias, gateCorrectionBias: w.gate_correction_bias, upGateProjWeight: w.up_gate_proj_weight,
    upGateProjBias: w.up_gate_proj_bias, downProjWeight: w.down_proj_weight, downProjBias: w.down_proj_bias,
    fc1LatentProjWeight: w.fc1_latent_proj_weight, fc2LatentProjWeight: w.fc2_latent_proj_weight,
    sharedUpGateProjWeight: w.shared_up_gate_proj_weight, sharedDownProjWeight: w.shared_down_proj_weight,
    sharedExpertGateWeight: w.shared_expert_gate_weight,
  };
}

/**
 * The native forward of each layer, by the calling layer (the owner registry of this executor's state), with the
 * options object and width it was checked for: a layer hands over the same options object until they change, so
 * a decode step skips the option checks and the config key.
 */
const perLayer = new WeakMap<object, {key: string, moe: CudaFusedMoe, options: FusedMoEOptions, hidden: number}>();

/** Checks options for the CUDA executor (before any upload or GPU work) and returns the native config. */
function checkedConfig(hidden: number, options: FusedMoEOptions): CudaFusedMoeConfig {
  const unsupported = unsupportedByCuda(options);
  if (unsupported != null) throw unsupported;
  return layerConfig(hidden, options);
}

/** The layer's CudaFusedMoe (its resident weights), made again when the layer's config changed. */
function layerMoe(owner: object, hidden: number, options: FusedMoEOptions): CudaFusedMoe {
  let entry = perLayer.get(owner);
  if (entry != null && entry.options === options && entry.hidden === hidden) return entry.moe;
  const config = checkedConfig(hidden, options);
  const key = JSON.stringify(config);
  if (entry == null || entry.key !== key) {
    entry?.moe.dispose();
    entry = {key, moe: new CudaFusedMoe(config), options, hidden};
  } else {
    entry = {...entry, options, hidden};
  }
  perLayer.set(owner, entry);
  return entry.moe;
}

export const cudaLayerExecutor: MoeLayerExecutor = {
  availability() {
    const s = cudaStatus();
    return s.available ? {available: true} : {available: false, reason: `${s.reason} (${s.code})`};
  },
  forward(x, weights, options, context) {
    const owner = context?.owner;
    const run = (moe: CudaFusedMoe): MoeForwardResult => {
      const r = moe.applyWithRouting(x, layerWeights(weights), {wantIds: context?.needsRouting === true});
      return {output: r.output as tf.Tensor2D, topkIds: r.topkIds};
    };
    if (owner == null) {  // no layer to key the upload by: a one-shot upload
      const moe = new CudaFusedMoe(checkedConfig(x.shape[1], options));
      try {
        return run(moe);
      } finally {
        moe.dispose();
      }
    }
    return run(layerMoe(owner, x.shape[1], options));
  },
  forwardDevice(x, weights, options, context) {
    const input = x as tf.Tensor | CudaActivation;
    const owner = context?.owner;
    if (owner == null) {  // one-shot: the weights' GPU copy is freed in stream order, after the forward
      const moe = new CudaFusedMoe(checkedConfig(x.shape[1], options));
      try {
        return moe.applyDevice(input, layerWeights(weights));
      } finally {
        moe.dispose();
      }
    }
    return layerMoe(owner, x.shape[1], options).applyDevice(input, layerWeights(weights));
  },
  release(owner) {
    perLayer.get(owner)?.moe.dispose();
    perLayer.delete(owner);
  },
};

/** (Re-)registers the 'cuda' layer executor (done at load; again after another executor replaced it). */
export function registerCudaLayerExecutor(): void {
  registerMoeLayerExecutor('cuda', cudaLayerExecutor);
}
