// The first expert GEMM with the SwiGLU x scale epilogue (webgpu): every program shape (stream and tiled, vec4
// and scalar, tiles whose RN had to be doubled) against refSwigluScale(refBatchedGemm(...)) in float64, with rows
// outside every segment (zero), an empty expert, biases and row scales.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';

import {expectNoLeak, randn, recordError, relError, rng} from '../helpers/util.js';
import {refBatchedGemm, refSwigluScale} from '../reference/moe_reference.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW_MS = 300_000;

describeWebGPU('webgpu batchedGemm with the SwiGLU epilogue', () => {
  afterEach(() => internal.setWebGPUGemmPreset(null));

  const cases: Array<{preset: string | null, I: number, bias: boolean, scale: boolean}> = [
    {preset: null, I: 12, bias: true, scale: true},
    {preset: null, I: 6, bias: true, scale: false},  // I % 4 != 0: scalar tiles
    {preset: 'stream8', I: 12, bias: true, scale: true},
    {preset: 'stream16', I: 20, bias: false, scale: true},
    {preset: 'tiled16', I: 12, bias: true, scale: false},  // RN 1 doubled to 2
    {preset: 'tiled64', I: 36, bias: true, scale: true},
    {preset: 'scalar', I: 12, bias: false, scale: false},
    {preset: 'r16x512', I: 12, bias: true, scale: true},  // register-blocked, prefetched, 16-row tiles
    {preset: 'r64x128np', I: 36, bias: false, scale: true},  // register-blocked without prefetch
  ];
  for (const c of cases) {
    it(`${c.preset ?? 'default choice'}, I ${c.I}, bias ${c.bias}, scale ${c.scale}`, async () => {
      const rand = rng(31 + c.I + (c.preset?.length ?? 0));
      const R = 30, K = 8, E = 5, N = 2 * c.I;
      // Rows 0-2 and 27-29 belong to no expert; expert 1 is empty.
      const offsets = [3, 8, 8, 15, 22, 27];
      const lhs = randn(rand, R * K), rhs = randn(rand, E * K * N, 0.5);
      const bias = c.bias ? randn(rand, E * N, 0.3) : null, scale = c.scale ? randn(rand, R) : null;
      internal.setWebGPUGemmPreset(c.preset);
      const got = await expectNoLeak(async () => {
        const ts = [tf.tensor2d(lhs, [R, K]), tf.tensor3d(rhs, [E, K, N]), tf.tensor1d(offsets, 'int32')] as const;
        const bt = bias == null ? null : tf.tensor2d(bias, [E, N]);
        const st = scale == null ? null : tf.tensor1d(scale);
        const out = moe.batchedGemmSwiglu(ts[0], ts[1], ts[2], {bias: bt, scale: st});
        expect(out.shape).toEqual([R, c.I]);
        const data = await out.data();
        tf.dispose([...ts, out, ...(bt ? [bt] : []), ...(st ? [st] : [])]);
        return data;
      });
      const h = refBatchedGemm(lhs, R, K, rhs, E, N, offsets, false, bias);
      const want = refSwigluScale(h, R, c.I, scale);
      // Rows in no segment: exactly zero (not silu(bias) * bias).
      for (const r of [0, 2, 27, 29]) expect(Array.from(got.slice(r * c.I, (r + 1) * c.I)).every(v => v === 0)).toBe(true);
      const err = relError(got, want);
      recordError('webgpu batchedGemm + SwiGLU epilogue', err);
      expect(err).toBeLessThan(1e-4);
    }, SLOW_MS);
  }
});
