/**
 * The ops chained as the FusedMoE forward chains them (route -> permute -> GEMM -> SwiGLU -> GEMM -> combine)
 * must give the doc's section 7 function, checked against refFusedMoE (which computes token by token). This
 * catches conventions that each op gets right alone but that do not fit together on one backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, fusedSwigluScale, getMoeScores, moeCombine, moePermute, moeTopkSelect} from 'tfjs-moe';

import {refFusedMoE, RefMoeConfig} from '../../reference/moe_reference.js';
import {expectNoLeak, randn, rng} from '../../helpers/util.js';
import {ConformanceContext, readF32, TOL} from './context.js';

interface ChainVariant {
  name: string;
  topkMethod: 'greedy' | 'noaux_tc';
  alignment: number;
  withBias: boolean;
  probInAdvance: boolean;
  useCorrectionBias: boolean;
}

const VARIANTS: ChainVariant[] = [
  {name: 'greedy, no bias', topkMethod: 'greedy', alignment: 1, withBias: false, probInAdvance: false, useCorrectionBias: false},
  {name: 'greedy, selection bias, expert biases, alignment 4', topkMethod: 'greedy', alignment: 4, withBias: true,
    probInAdvance: false, useCorrectionBias: true},
  {name: 'greedy, probInAdvance with expert biases', topkMethod: 'greedy', alignment: 1, withBias: true,
    probInAdvance: true, useCorrectionBias: false},
  {name: 'noaux_tc, alignment 8, probInAdvance', topkMethod: 'noaux_tc', alignment: 8, withBias: true,
    probInAdvance: true, useCorrectionBias: true},
];

export function describeOpChainConformance(ctx: ConformanceContext): void {
  describe('op chain = refFusedMoE', () => {
    const variants = ctx.full ? VARIANTS : [VARIANTS[1], VARIANTS[3]];
    variants.forEach((v, vi) => {
      it(v.name, async () => {
        const rand = rng(900 + vi);
        const T = ctx.full ? 13 : 4, H = ctx.full ? 24 : 8, E = 8, k = 3, I = ctx.full ? 16 : 4;
        const cfg: RefMoeConfig = {
          numExperts: E, topK: k, intermediateSize: I, topkMethod: v.topkMethod, nGroup: 4, topkGroup: 2,
          routedScalingFactor: v.topkMethod === 'noaux_tc' ? 2.5 : 1, renormalize: true,
          useCorrectionBias: v.useCorrectionBias, latentSize: null, withBias: v.withBias, probInAdvance: v.probInAdvance,
          sharedExpertIntermediateSize: 0, sharedExpertGate: false,
        };
        const w = {
          gateWeight: randn(rand, H * E, 0.5), gateCorrectionBias: randn(rand, E, 0.05),
          upGateProjWeight: randn(rand, E * H * 2 * I, 0.3), upGateProjBias: randn(rand, E * 2 * I, 0.1),
          downProjWeight: randn(rand, E * I * H, 0.3), downProjBias: randn(rand, E * H, 0.1),
        };
        const x = randn(rand, T * H);

        await expectNoLeak(async () => {
          const t = (values: Float32Array, shape: number[]) => tf.tensor(values, shape);
          const xT = t(x, [T, H]) as tf.Tensor2D;
          const gateT = t(w.gateWeight, [H, E]) as tf.Tensor2D;
          const corrT = v.useCorrectionBias ? t(w.gateCorrectionBias, [E]) as tf.Tensor1D : null;
          const upT = t(w.upGateProjWeight, [E, H, 2 * I]) as tf.Tensor3D;
          const upBiasT = v.withBias ? t(w.upGateProjBias, [E, 2 * I]) as tf.Tensor2D : null;
          const downT = t(w.downProjWeight, [E, I, H]) as tf.Tensor3D;
          const downBiasT = v.withBias ? t(w.downProjBias, [E, H]) as tf.Tensor2D : null;
          const inputs = [xT, gateT, corrT, upT, upBiasT, downT, downBiasT];
          try {
            const logits = tf.matMul(xT, gateT) as tf.Tensor2D;
            const route = ctx.call(() => v.topkMethod === 'greedy' ?
                moeTopkSelect(logits, corrT, k, cfg.renormalize) :
                getMoeScores(logits, cfg.nGroup, cfg.topkGroup, k, cfg.routedScalingFactor, corrT, cfg.renormalize));
            logits.dispose();
            if ('scores' in route) (route.scores as tf.Tensor).dispose();
            const p = ctx.call(() => moePermute(xT, route.topkIds, E, v.alignment));
            const h = ctx.call(() => batchedGemm(p.permutedX, upT, p.expertOffsets, {bias: upBiasT}));
            let scale: tf.Tensor1D | null = null;
            if (v.probInAdvance) {
              // The row weights in row order; the layer does this on the device, a test may do it on the host.
              const rowMap = await p.rowMap.data(), weights = await route.topkWeights.data();
              const rowScale = new Float32Array(p.permutedX.shape[0]);
              for (let i = 0; i < rowMap.length; i++) rowScale[rowMap[i]] = weights[i];
              scale = tf.tensor1d(rowScale);
            }
            const a = ctx.call(() => fusedSwigluScale(h, scale));
            const y = ctx.call(() => batchedGemm(a, downT, p.expertOffsets));
            const out = ctx.call(() => moeCombine(y, p.rowMap, route.topkWeights, route.topkIds,
                {downProjBias: downBiasT, weightsApplied: v.probInAdvance}));
            tf.dispose([route.topkIds, route.topkWeights, p.permutedX, p.tokensPerExpert, p.expertOffsets, p.rowMap, h,
              a, y]);
            scale?.dispose();
            const got = await readF32(out);
            ctx.expectClose('op chain', got, refFusedMoE(x, T, H, w, cfg), TOL.gemm, v.name);
          } finally {
            for (const input of inputs) input?.dispose();
          }
        });
      });
    });
  });
}
