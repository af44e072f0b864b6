// gpt-oss's MXFP4 experts as transformers 5.17 stores them (spec/fixtures/hf_gpt_oss_mxfp4.json): the formats'
// fromGptOssMxfp4 + dequantizeExpertWeights gives, bit for bit, the weights that transformers' own dequantizer
// produced for the fixture's block (reproduced by the spec's dequantizeMxfp4, which the float64 reference spec
// checks against transformers' output). Loading gpt-oss itself waits for phase B (docs/families-phase-b.md).
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {expectNoLeak} from '../helpers/util.js';
import {base64Bytes, dequantizeMxfp4, parseSafetensors, readFixture} from './hf_fixtures.js';

describe('gpt-oss MXFP4 checkpoint tensors (transformers 5.17 fixture)', () => {
  for (const proj of ['gate_up_proj', 'down_proj']) {
    it(`${proj}: fromGptOssMxfp4 dequantizes to transformers' weights`, async () => {
      const f = readFixture('gpt_oss_mxfp4');
      const hub = parseSafetensors(base64Bytes(f.hub_safetensors_b64));
      const blocks = hub.get(`${f.hub_prefix}experts.${proj}_blocks`)!;
      const scales = hub.get(`${f.hub_prefix}experts.${proj}_scales`)!;
      const want = dequantizeMxfp4(blocks, scales);  // [E, in, out]
      const [E, K, N] = want.shape;
      const got = await expectNoLeak(async () => {
        const bytes = (t: typeof blocks) => ({shape: t.shape, data: t.data as Uint8Array});
        const q = moe.fromGptOssMxfp4(bytes(blocks), bytes(scales));
        try {
          const w = moe.dequantizeExpertWeights(q);  // [E, N, K]: the checkpoint's orientation
          const data = await w.data();
          w.dispose();
          return data;
        } finally {
          tf.dispose([q.values, q.scales!]);
        }
      });
      let mismatches = 0;
      for (let e = 0; e < E; e++) for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) {
        if (!Object.is(got[(e * N + n) * K + k], want.data[(e * K + k) * N + n])) mismatches++;
      }
      expect(mismatches).withContext(`${proj} [E=${E}, K=${K}, N=${N}]`).toBe(0);
    });
  }
});
