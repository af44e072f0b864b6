/** Random FusedMoE weights for a config (the CUDA specs' layers): every tensor the config needs, scaled ~1/sqrt(fan-in). */
import {randn} from '../helpers/util.js';
import {RefMoeConfig} from '../reference/moe_reference.js';

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
