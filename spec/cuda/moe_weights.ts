/** Random FusedMoE weights for a config (the CUDA specs' layers): every tensor the config needs, scaled ~1/sqrt(fan-in). */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError} from '../helpers/util.js';
import {refFusedMoE, RefMoeConfig, RefMoeOptions, RefMoeWeights} from '../reference/moe_reference.js';

/** A plain layer config (greedy softmax top-k, renormalised, no biases or shared experts): the packed-format specs'. */
export function greedyMoeConfig(E: number, k: number, I: number): RefMoeConfig {
  return {numExperts: E, topK: k, intermediateSize: I, topkMethod: 'greedy', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null, withBias: false,
    probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
}

/** The layer's weights as tensors, with the two expert weights replaced by packed ones (the rest 1-d float32). */
export function packedWeightTensors(w: Record<string, Float32Array>, upGate: object, down: object): Record<string, unknown> {
  const tensors: Record<string, unknown> = {};
  for (const [n, v] of Object.entries(w)) {
    if (n !== 'upGateProjWeight' && n !== 'downProjWeight') tensors[n] = tf.tensor1d(v);
  }
  tensors.upGateProjWeight = upGate;
  tensors.downProjWeight = down;
  return tensors;
}

export function randomMoeWeights(rand: () => number, H: number, cfg: RefMoeConfig): Record<string, Float32Array> {
  const E = cfg.numExperts, I = cfg.intermediateSize, L = cfg.latentSize, D = L ?? H, S = cfg.sharedExpertIntermediateSize;
  const w: Record<string, Float32Array> = {
    gateWeight: randn(rand, H * E, 2 / Math.sqrt(H)),
    upGateProjWeight: randn(rand, E * D * 2 * I, 1 / Math.sqrt(D)),
    downProjWeight: randn(rand, E * I * D, 1 / Math.sqrt(I)),
  };
  if (cfg.useCorrectionBias) w.gateCorrectionBias = randn(rand, E, 0.1);
  if (cfg.withBias) {
    w.upGateProjBias = randn(rand, E * 2 * I, 0.2);
    w.downProjBias = randn(rand, E * D, 0.2);
  }
  if (L != null) {
    w.fc1LatentProjWeight = randn(rand, H * L, 1 / Math.sqrt(H));
    w.fc2LatentProjWeight = randn(rand, L * H, 1 / Math.sqrt(L));
  }
  if (S > 0) {
    w.sharedUpGateProjWeight = randn(rand, H * 2 * S, 1 / Math.sqrt(H));
    w.sharedDownProjWeight = randn(rand, S * H, 1 / Math.sqrt(S));
  }
  if (cfg.sharedExpertGate) w.sharedExpertGateWeight = randn(rand, H, 1 / Math.sqrt(H));
  return w;
}

/**
 * Two forwards of a CudaFusedMoe layer (the second replays the CUDA graph the first captured) on random x against
 * the float64 reference: no tensor leaks, relative error below `bound` (recorded under `label`).
 */
export async function expectLayerMatchesReference(rand: () => number, T: number, H: number, cfg: RefMoeOptions,
                                                  dtype: CudaComputeDtype, bound: number, label: string) {
  const w = randomMoeWeights(rand, H, cfg as RefMoeConfig);
  const weights: Record<string, tf.Tensor> = {};
  for (const [name, v] of Object.entries(w)) weights[name] = tf.tensor1d(v);
  const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: dtype});
  try {
    for (let call = 0; call < 2; call++) {
      const x = randn(rand, T * H);
      const xT = tf.tensor2d(x, [T, H]);
      const before = tf.memory().numTensors;
      const out = layer.apply(xT, weights as unknown as CudaMoeWeightTensors);
      expect(tf.memory().numTensors).toBe(before + 1);
      const got = await out.data();
      tf.dispose([xT, out]);
      const err = relError(got, refFusedMoE(x, T, H, w as unknown as RefMoeWeights, cfg));
      recordError(label, err);
      expect(err).withContext(`call ${call}`).toBeLessThan(bound);
    }
  } finally {
    layer.dispose();
    tf.dispose(Object.values(weights));
  }
}
