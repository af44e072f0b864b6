// gpt-oss's MXFP4 experts as transformers 5.17 stores them (spec/fixtures/hf_gpt_oss_mxfp4.json): the formats'
// fromGptOssMxfp4 + dequantizeExpertWeights gives, bit for bit, the weights that transformers' own dequantizer
// produced for the fixture's block (reproduced by the spec's dequantizeMxfp4, which the float64 reference spec
// checks against transformers' output). loadHuggingFaceMoe keeps the codes into an 'mxfp4' layer (the stored
// words are the hub blocks' bytes, gate/up rows de-interleaved whole) and matches transformers' output; into
// other formats it goes through the exact dequantization.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import {FusedMoE, loadHuggingFaceMoe, readSafetensors} from 'tfjs-moe';

import {expectNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {applyAndRead} from '../layers/layer_util.js';
import {base64Bytes, dequantizeMxfp4, FixtureTensor, parseSafetensors, readFixture} from './hf_fixtures.js';
import {f32Bytes, RawTensor, writeSafetensors} from './safetensors_writer.js';

/** The layer's column c of gpt-oss's gate_up (gate columns first) is hub row 2c (gate) or 2(c - I) + 1 (up). */
function hubRow(c: number, N: number, interleaved: boolean): number {
  if (!interleaved) return c;
  return c < N / 2 ? 2 * c : 2 * (c - N / 2) + 1;
}

/**
 * The words and scale words an [E,K,N] 'mxfp4' layer must hold for hub blocks [E,N,G,16] / scales [E,N,G]
 * (docs/formats.md 2.1, 2.3): word (e, kw, c) = bytes 4kw..4kw+3 of row hubRow(c), little-endian; scale byte
 * (e, g, c) at word (e*G + g)*ceil(N/4) + c/4, bits 8 (c mod 4).
 */
function expectedMxfp4Words(blocks: FixtureTensor, scales: FixtureTensor, interleaved: boolean):
    {values: number[], scales: number[]} {
  const [E, N, G] = blocks.shape, Kw = G * 4, Nw = Math.ceil(N / 4);
  const values = new Array<number>(E * Kw * N).fill(0), scaleWords = new Array<number>(E * G * Nw).fill(0);
  for (let e = 0; e < E; e++) {
    for (let c = 0; c < N; c++) {
      const row = (e * N + hubRow(c, N, interleaved)) * G * 16;
      for (let kw = 0; kw < Kw; kw++) {
        const b = (i: number) => blocks.data[row + 4 * kw + i];
        values[(e * Kw + kw) * N + c] = (b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24) | 0;
      }
      for (let g = 0; g < G; g++) {
        const byte = scales.data[(e * N + hubRow(c, N, interleaved)) * G + g];
        scaleWords[(e * G + g) * Nw + (c >> 2)] |= byte << (8 * (c & 3));
      }
    }
  }
  return {values, scales: scaleWords};
}

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

describe('gpt-oss hub MXFP4 through loadHuggingFaceMoe (transformers 5.17 fixture)', () => {
  const f = readFixture('gpt_oss_mxfp4');
  const hub = parseSafetensors(base64Bytes(f.hub_safetensors_b64));
  const tensor = (proj: string, part: string) => hub.get(`${f.hub_prefix}experts.${proj}_${part}`)!;

  for (const keepDtype of [false, true]) {
    for (const backend of ['cpu', 'composite'] as const) {
      it(`into 'mxfp4'${keepDtype ? ' (keepDtype: raw U8)' : ''}, ${backend}: the stored words are the hub bytes and ` +
         'the output matches transformers', async () => {
        const bytes = base64Bytes(f.hub_safetensors_b64);
        const before = tf.memory().numTensors;
        const weights = keepDtype ? readSafetensors(bytes, {keepDtype: true}) : readSafetensors(bytes);
        let layer: FusedMoE | null = null;
        try {
          layer = loadHuggingFaceMoe(f.config, weights, {prefix: f.hub_prefix, backend, expertWeightFormat: 'mxfp4'});
          for (const [which, proj, interleaved] of [['up_gate_proj_weight', 'gate_up_proj', true],
            ['down_proj_weight', 'down_proj', false]] as const) {
            const q = layer.expertWeights(which);
            expect([q.format, q.groupSize, q.transposed]).toEqual(['mxfp4', 32, false]);
            const want = expectedMxfp4Words(tensor(proj, 'blocks'), tensor(proj, 'scales'), interleaved);
            expect(Array.from(await q.values.data())).withContext(`${which} codes`).toEqual(want.values);
            expect(Array.from(await q.scales!.data())).withContext(`${which} scales`).toEqual(want.scales);
          }
          const y = await expectNoLeak(() => applyAndRead(layer!, Float32Array.from(f.input.data), f.input.shape));
          const err = relError(y, f.output.data);
          recordError(`transformers gpt_oss_mxfp4 -> mxfp4 layer [${backend}]`, err);
          expect(err).toBeLessThan(1e-5);
        } finally {
          layer?.dispose();
          for (const t of Object.values(weights)) if (t instanceof tf.Tensor) t.dispose();
        }
        expect(tf.memory().numTensors).withContext('tensors after dispose').toBe(before);
      });
    }
  }

  it('into float32: exactly transformers\' dequantized weights (gate columns first); into other formats: the ' +
     'exact weights quantized into that format', async () => {
    const weights = readSafetensors(base64Bytes(f.hub_safetensors_b64), {keepDtype: true});
    await expectNoLeak(async () => {
      const exact = loadHuggingFaceMoe(f.config, weights, {prefix: f.hub_prefix});
      for (const [which, proj, interleaved] of [['up_gate_proj_weight', 'gate_up_proj', true],
        ['down_proj_weight', 'down_proj', false]] as const) {
        const dense = dequantizeMxfp4(tensor(proj, 'blocks'), tensor(proj, 'scales'));  // [E, K, N] hub columns
        const [E, K, N] = dense.shape;
        const want = new Float32Array(E * K * N);
        for (let e = 0; e < E; e++) for (let k = 0; k < K; k++) for (let c = 0; c < N; c++) {
          want[(e * K + k) * N + c] = dense.data[(e * K + k) * N + hubRow(c, N, interleaved)];
        }
        const got = await exact.expertWeights(which).values.data();
        let bad = 0;
        for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) bad++;
        expect(bad).withContext(`${which} float32 weights`).toBe(0);
      }
      for (const [format, groupSize] of [['bfloat16', null], ['float16', null], ['int8', null], ['int4', 32]] as const) {
        const direct = loadHuggingFaceMoe(f.config, weights, {prefix: f.hub_prefix, expertWeightFormat: format,
                                                               quantGroupSize: groupSize});
        const after = loadHuggingFaceMoe(f.config, weights, {prefix: f.hub_prefix});
        after.quantizeExperts(format, groupSize == null ? {} : {groupSize});
        for (const which of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
          const a = direct.expertWeights(which), b = after.expertWeights(which);
          for (const part of ['values', 'scales'] as const) {
            expect(a[part] == null).toBe(b[part] == null);
            if (a[part] != null) {
              expect(Array.from(await a[part]!.data())).withContext(`${format} ${which}.${part}`)
                  .toEqual(Array.from(await b[part]!.data()));
            }
          }
        }
        direct.dispose();
        after.dispose();
      }
      exact.dispose();
    });
  });

  it('several blocks per row (H 96, I 64: 3 and 2 blocks), random codes and scales: the same words', async () => {
    const H = 96, I = 64, E = 3, rand = rng(91);
    const config = {...f.config, hidden_size: H, intermediate_size: I, num_local_experts: E};
    const at = (name: string) => `${f.hub_prefix}${name}`;
    const bytes = (n: number, lo: number, span: number) => Uint8Array.from({length: n}, () => lo + Math.floor(rand() * span));
    const gu = {blocks: {shape: [E, 2 * I, H / 32, 16], data: bytes(E * 2 * I * H / 2, 0, 256)},
      scales: {shape: [E, 2 * I, H / 32], data: bytes(E * 2 * I * H / 32, 122, 8)}};
    const dn = {blocks: {shape: [E, H, I / 32, 16], data: bytes(E * H * I / 2, 0, 256)},
      scales: {shape: [E, H, I / 32], data: bytes(E * H * I / 32, 122, 8)}};
    const u8 = (t: {shape: number[], data: Uint8Array}): RawTensor => ({dtype: 'U8', shape: t.shape, bytes: t.data});
    const f32 = (shape: number[]): RawTensor =>
      ({dtype: 'F32', shape, bytes: f32Bytes(Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => rand() - 0.5))});
    const file = writeSafetensors({[at('router.weight')]: f32([E, H]), [at('router.bias')]: f32([E]),
      [at('experts.gate_up_proj_bias')]: f32([E, 2 * I]), [at('experts.down_proj_bias')]: f32([E, H]),
      [at('experts.gate_up_proj_blocks')]: u8(gu.blocks), [at('experts.gate_up_proj_scales')]: u8(gu.scales),
      [at('experts.down_proj_blocks')]: u8(dn.blocks), [at('experts.down_proj_scales')]: u8(dn.scales)});
    const weights = readSafetensors(file, {keepDtype: true});
    await expectNoLeak(async () => {
      const layer = loadHuggingFaceMoe(config, weights, {prefix: f.hub_prefix, expertWeightFormat: 'mxfp4'});
      for (const [which, t, interleaved] of [['up_gate_proj_weight', gu, true], ['down_proj_weight', dn, false]] as const) {
        const want = expectedMxfp4Words(t.blocks, t.scales, interleaved);
        const q = layer.expertWeights(which);
        expect(Array.from(await q.values.data())).withContext(`${which} codes`).toEqual(want.values);
        expect(Array.from(await q.scales!.data())).withContext(`${which} scales`).toEqual(want.scales);
      }
      layer.dispose();
    });
    for (const t of Object.values(weights)) if (t instanceof tf.Tensor) t.dispose();
  });
});
