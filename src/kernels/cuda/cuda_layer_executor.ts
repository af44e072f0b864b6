/**
 * The FusedMoE layer's 'cuda' backend: an executor for the layer's hook (layers/backend_selection.ts) that runs
 * the whole forward natively through CudaFusedMoe, keeping each layer's weights resident on the GPU (keyed by
 * the calling layer, re-uploaded when a weight's data changes, freed when the layer is disposed).
 * Registered when the package loads (browser-safe: availability() is the first thing that touches Node).
 */
import type * as tf from '@tensorflow/tfjs-core';

import {MoeLayerExecutor, registerMoeLayerExecutor} from '../../layers/backend_selection.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../../layers/fused_moe_config.js';
import {CudaFusedMoe, CudaFusedMoeConfig, CudaMoeWeightTensors} from './cuda_fused_moe.js';
import {cudaStatus} from './loader.js';

function layerConfig(hidden: number, o: FusedMoEOptions): CudaFusedMoeConfig {
  return {
    hidden, numExperts: o.numExperts, topK: o.topK, intermediateSize: o.moeIntermediateSize, topkMethod: o.topkMethod,
    nGroup: o.nGroup, topkGroup: o.topkGroup, routedScalingFactor: o.routedScalingFactor, renormalize: o.renormalize,
    useCorrectionBias: o.useCorrectionBias, latentSize: o.latentSize, withBias: o.withBias,
    probInAdvance: o.probInAdvance, sharedExpertIntermediateSize: o.sharedExpertIntermediateSize,
    sharedExpertGate: o.sharedExpertGate, computeDtype: o.computeDtype,
  };
}

function layerWeights(w: FusedMoEWeights): CudaMoeWeightTensors {
  return {
    gateWeight: w.gate_weight, gateCorrectionBias: w.gate_correction_bias, upGateProjWeight: w.up_gate_proj_weight,
    upGateProjBias: w.up_gate_proj_bias, downProjWeight: w.down_proj_weight, downProjBias: w.down_proj_bias,
    fc1LatentProjWeight: w.fc1_latent_proj_weight, fc2LatentProjWeight: w.fc2_latent_proj_weight,
    sharedUpGateProjWeight: w.shared_up_gate_proj_weight, sharedDownProjWeight: w.shared_down_proj_weight,
    sharedExpertGateWeight: w.shared_expert_gate_weight,
  };
}

const perLayer = new WeakMap<object, {key: string, moe: CudaFusedMoe}>();

export const cudaLayerExecutor: MoeLayerExecutor = {
  availability() {
    const s = cudaStatus();
    return s.available ? {available: true} : {available: false, reason: `${s.reason} (${s.code})`};
  },
  forward(x, weights, options, context) {
    const config = layerConfig(x.shape[1], options);
    const key = JSON.stringify(config);
    const owner = context?.owner;
    if (owner == null) {  // no layer to key the upload by: a one-shot upload
      const moe = new CudaFusedMoe(config);
      try {
        return moe.apply(x, layerWeights(weights)) as tf.Tensor2D;
      } finally {
        moe.dispose();
      }
    }
    let entry = perLayer.get(owner);
    if (entry == null || entry.key !== key) {
      entry?.moe.dispose();
      entry = {key, moe: new CudaFusedMoe(config)};
      perLayer.set(owner, entry);
    }
    return entry.moe.apply(x, layerWeights(weights)) as tf.Tensor2D;
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

registerCudaLayerExecutor();
