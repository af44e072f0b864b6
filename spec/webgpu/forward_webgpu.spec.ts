// The MoE forward on webgpu end to end: the op chain against refFusedMoE, with no GPU->CPU read inside it, and the
// expert-sharded GEMM under a forced small storage-binding limit.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';

import {countBackendReads, randn, readAll, recordError, relError, rng} from '../helpers/util.js';
import {refBatchedGemm, refFusedMoE, RefMoeConfig} from '../reference/moe_reference.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW = 300_000;

describeWebGPU('webgpu MoE forward', () => {
  const baseConfig: RefMoeConfig = {numExperts: 6, topK: 2, intermediateSize: 8, topkMethod: 'greedy', nGroup: 1,
    topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
    withBias: true, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};

  for (const variant of ['greedy', 'greedy probInAdvance', 'noaux_tc'] as const) {
    it(`the op chain (${variant}) matches refFusedMoE and reads nothing back`, async () => {
      const rand = rng(variant.length);
      const cfg: RefMoeConfig = {...baseConfig, probInAdvance: variant === 'greedy probInAdvance',
        topkMethod: variant === 'noaux_tc' ? 'noaux_tc' : 'greedy', nGroup: variant === 'noaux_tc' ? 3 : 1,
        topkGroup: variant === 'noaux_tc' ? 2 : 1, routedScalingFactor: variant === 'noaux_tc' ? 2.5 : 1};
      const T = 11, H = 12, E = cfg.numExperts, k = cfg.topK, I = cfg.intermediateSize;
      const w = {gateWeight: randn(rand, H * E), upGateProjWeight: randn(rand, E * H * 2 * I, 0.5),
                 upGateProjBias: randn(rand, E * 2 * I, 0.1), downProjWeight: randn(rand, E * I * H, 0.5),
                 downProjBias: randn(rand, E * H, 0.1)};
      const x = randn(rand, T * H);
      const before = tf.memory().numTensors;
      const ts = {x: tf.tensor2d(x, [T, H]), gate: tf.tensor2d(w.gateWeight, [H, E]),
                  up: tf.tensor3d(w.upGateProjWeight, [E, H, 2 * I]), upBias: tf.tensor2d(w.upGateProjBias, [E, 2 * I]),
                  down: tf.tensor3d(w.downProjWeight, [E, I, H]), downBias: tf.tensor2d(w.downProjBias, [E, H])};
      const {result: out, reads} = countBackendReads(() => tf.tidy(() => {
        const logits = tf.matMul(ts.x, ts.gate) as tf.Tensor2D;
        const {topkIds, topkWeights} = cfg.topkMethod === 'greedy' ?
            moe.moeTopkSelect(logits, null, k, cfg.renormalize) :
            moe.getMoeScores(logits, cfg.nGroup, cfg.topkGroup, k, cfg.routedScalingFactor, null, cfg.renormalize);
        const {permutedX, expertOffsets, rowMap} = moe.moePermute(ts.x, topkIds, E, 4);
        // Row weights for probInAdvance: the weight of the (token, slot) each row holds, via rowMap.
        let scale: tf.Tensor1D | null = null;
        if (cfg.probInAdvance) {
          scale = tf.scatterND(rowMap.reshape([T * k, 1]), topkWeights.reshape([T * k]), [permutedX.shape[0]]) as
              tf.Tensor1D;
        }
        const h = moe.batchedGemm(permutedX, ts.up, expertOffsets, {bias: ts.upBias});
        const y = moe.batchedGemm(moe.fusedSwigluScale(h, scale), ts.down, expertOffsets);
        return moe.moeCombine(y, rowMap, topkWeights, topkIds,
                              {downProjBias: ts.downBias, weightsApplied: cfg.probInAdvance});
      }));
      expect(reads).withContext('GPU->CPU reads during the forward').toBe(0);
      const [got] = await readAll(out, ...Object.values(ts));
      expect(tf.memory().numTensors).toBe(before);
      const err = relError(got, refFusedMoE(x, T, H, w, cfg));
      recordError(`webgpu op-chain forward ${variant}`, err);
      expect(err).toBeLessThan(1e-4);
    }, SLOW);
  }

  it('shards expert weights under a forced small binding limit and still matches the reference', async () => {
    const rand = rng(77);
    const R = 40, K = 8, N = 12, E = 7;
    const counts = [6, 0, 9, 3, 8, 5, 4];
    const offsets = [0];
    for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
    const lhs = randn(rand, R * K), rhs = randn(rand, E * K * N), bias = randn(rand, E * N);
    const bytesPerExpert = K * N * 4;
    internal.setMaxStorageBindingBytes(bytesPerExpert * 3);
    try {
      const ranges = internal.planExpertShards(E, bytesPerExpert);
      expect(ranges).toEqual([{start: 0, end: 3}, {start: 3, end: 6}, {start: 6, end: 7}]);
      const before = tf.memory().numTensors;
      const full = tf.tensor3d(rhs, [E, K, N]);
      const shards = ranges.map(r => tf.slice(full, [r.start, 0, 0], [r.end - r.start, K, N]) as tf.Tensor3D);
      const lt = tf.tensor2d(lhs, [R, K]), st = tf.tensor1d(offsets, 'int32'), bt = tf.tensor2d(bias, [E, N]);
      const out = internal.shardedBatchedGemm(lt, shards, ranges, st, {bias: bt});
      const [got] = await readAll(out, full, lt, st, bt, ...shards);
      expect(tf.memory().numTensors).toBe(before);
      const err = relError(got, refBatchedGemm(lhs, R, K, rhs, E, N, offsets, false, bias));
      recordError('webgpu sharded batchedGemm', err);
      expect(err).toBeLessThan(1e-4);
      expect(() => internal.planExpertShards(E, bytesPerExpert * 4)).toThrowError(/bytesPerExpert/);
    } finally {
      internal.setMaxStorageBindingBytes(null);
    }
  }, SLOW);
});
