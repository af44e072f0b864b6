// loadHuggingFaceMoe into packed expert formats (docs/formats.md): quantizing expert by expert while loading gives
// exactly the codes of loading in float32 and quantizing after; raw BF16 / F16 data (readSafetensors keepDtype)
// loads without a float32 detour and bit for bit; nothing leaks.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import {FusedMoE, loadHuggingFaceMoe, readSafetensors} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, rng} from '../helpers/util.js';
import {LAYER_FORMAT_VARIANTS} from '../layers/layer_formats_cases.js';
import {FAMILY_CASES, hfTensors, randomBlock} from './hf_test_util.js';
import {RawTensor, u16Bytes, writeSafetensors} from './safetensors_writer.js';

const NAMES = ['up_gate_proj_weight', 'down_proj_weight'] as const;

async function expectSameExperts(a: FusedMoE, b: FusedMoE, what: string): Promise<void> {
  for (const name of NAMES) {
    const qa = a.expertWeights(name), qb = b.expertWeights(name);
    expect(qb.format).withContext(what).toBe(qa.format);
    expect(qb.groupSize).withContext(what).toBe(qa.groupSize);
    for (const part of ['values', 'scales', 'zeroPoints'] as const) {
      expect(qb[part] == null).withContext(`${what} ${name}.${part}`).toBe(qa[part] == null);
      if (qa[part] == null) continue;
      expect(Array.from(await qb[part]!.data())).withContext(`${what} ${name}.${part}`)
          .toEqual(Array.from(await qa[part]!.data()));
    }
  }
}

/** A block's tensors as a BF16 (or F16) safetensors file: the float values truncated to 16-bit patterns. */
function halfFile(tensors: Record<string, tf.Tensor>, dtype: 'BF16' | 'F16'): Uint8Array {
  const raw: Record<string, RawTensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const v = t.dataSync() as Float32Array;
    const bits = dtype === 'BF16' ? Array.from(new Uint32Array(v.slice().buffer), b => b >>> 16) :
        Array.from(v, x => {
          // Small values only (|x| < 4): a normal half built from the float's bits, mantissa truncated.
          const b = new Uint32Array(new Float32Array([x]).buffer)[0];
          const e = ((b >>> 23) & 0xff) - 127 + 15;
          return e <= 0 ? (b >>> 16) & 0x8000 : ((b >>> 16) & 0x8000) | (e << 10) | ((b >>> 13) & 0x3ff);
        });
    raw[name] = {dtype, shape: t.shape, bytes: u16Bytes(bits)};
  }
  return writeSafetensors(raw);
}

describe('loadHuggingFaceMoe into packed expert formats', () => {
  for (const c of FAMILY_CASES.filter(f => f.family === 'qwen3_moe' || f.family === 'deepseek_v3')) {
    for (const layout of ['hub', 'fused'] as const) {
      it(`${c.family}, ${layout}: every format equals loading in float32 then quantizeExperts`, async () => {
        const tensors = hfTensors(c, randomBlock(c, rng(c.family.length * 7 + layout.length)), layout, 'mlp.');
        await expectNoLeak(async () => {
          for (const v of LAYER_FORMAT_VARIANTS) {
            const opts = {prefix: 'mlp', expertWeightFormat: v.format, quantGroupSize: v.groupSize ?? null,
              quantZeroPoint: v.zeroPoint ?? false};
            const id = v.label.replace(/\W/g, '_');
            const direct = loadHuggingFaceMoe(c.config, tensors, {...opts, name: `direct_${id}`});
            const after = loadHuggingFaceMoe(c.config, tensors, {prefix: 'mlp', name: `after_${id}`});
            after.quantizeExperts(v.format, {groupSize: v.groupSize, zeroPoint: v.zeroPoint});
            expect(direct.options.expertWeightFormat).toBe(v.format);
            await expectSameExperts(after, direct, `${c.family} ${layout} ${v.label}`);
            direct.dispose();
            after.dispose();
          }
        });
        tf.dispose(Object.values(tensors));
      });
    }
  }

  for (const dtype of ['BF16', 'F16'] as const) {
    it(`raw ${dtype} data (keepDtype) loads bit for bit into half, int4 and float32 layers`, async () => {
      const c = FAMILY_CASES.find(f => f.family === 'qwen2_moe')!;
      for (const layout of ['hub', 'fused'] as const) {
        const tensors = hfTensors(c, randomBlock(c, rng(dtype.length + layout.length)), layout, '');
        const file = halfFile(tensors, dtype);
        tf.dispose(Object.values(tensors));
        const decoded = readSafetensors(file);
        const raw = readSafetensors(file, {keepDtype: true});
        expect(Object.values(raw).every(t => moe.isRawSafetensor(t))).toBeTrue();
        const before = tf.memory().numTensors;
        const half = dtype === 'BF16' ? 'bfloat16' : 'float16';
        for (const format of [half, 'int4', 'float32'] as const) {
          const fromRaw = loadHuggingFaceMoe(c.config, raw, {expertWeightFormat: format, name: `raw_${format}`});
          const fromFloat = loadHuggingFaceMoe(c.config, decoded, {expertWeightFormat: format, name: `f_${format}`});
          await expectSameExperts(fromFloat, fromRaw, `${dtype} ${layout} -> ${format}`);
          // The router and shared experts decode exactly too.
          expect(Array.from(await fromRaw.namedWeights().gate_weight.data()))
              .toEqual(Array.from(await fromFloat.namedWeights().gate_weight.data()));
          fromRaw.dispose();
          fromFloat.dispose();
        }
        expect(tf.memory().numTensors).withContext('tensors after the loads').toBe(before);
        // Into its own half format the codes are the file's 16-bit patterns: dequantizing gives the decoded floats.
        const layer = loadHuggingFaceMoe(c.config, raw, {expertWeightFormat: half, name: 'half_exact'});
        const w = moe.dequantizeExpertWeights(layer.expertWeights('down_proj_weight'));
        const ref = tf.transpose(tf.stack(Array.from({length: c.E}, (_, e) => decoded[`experts.${e}.down_proj.weight`] ??
            tf.slice(decoded['experts.down_proj'], [e, 0, 0], [1, -1, -1]).reshape([c.H, c.I]))), [0, 2, 1]);
        expect(Array.from(await w.data())).toEqual(Array.from(await ref.data()));
        tf.dispose([w, ref]);
        layer.dispose();
        tf.dispose(Object.values(decoded));
      }
    });
  }

  it('readSafetensors keepDtype keeps U8 / I8 / F16 / BF16 as raw views and decodes the rest', () => {
    const file = writeSafetensors({
      a: {dtype: 'BF16', shape: [2], bytes: u16Bytes([0x3f80, 0xc000])},
      b: {dtype: 'U8', shape: [3], bytes: new Uint8Array([1, 2, 255])},
      c: {dtype: 'F32', shape: [1], bytes: new Uint8Array(new Float32Array([1.5]).buffer)},
    });
    const out = readSafetensors(file, {keepDtype: true});
    const a = out.a as moe.RawSafetensor, b = out.b as moe.RawSafetensor;
    expect(a.dtype).toBe('BF16');
    expect(Array.from(a.data)).toEqual([0x80, 0x3f, 0x00, 0xc0]);
    expect(b.data.buffer).withContext('a view, not a copy').toBe(file.buffer);
    expect(out.c instanceof tf.Tensor).toBeTrue();
    (out.c as tf.Tensor).dispose();
  });

  it('rejects raw data of a non-float dtype for a float weight, naming it; nothing leaks', () => {
    const c = FAMILY_CASES.find(f => f.family === 'mixtral')!;
    const tensors = hfTensors(c, randomBlock(c, rng(5)), 'hub', '');
    const raw: Record<string, tf.Tensor | moe.RawSafetensor> = {...tensors};
    raw['experts.1.w2.weight'] = {dtype: 'U8', shape: [c.H, c.I], data: new Uint8Array(c.H * c.I)};
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, raw, {expertWeightFormat: 'int8'}),
                       /weight 'experts.1.w2.weight' must be float \(F16\/BF16\/F32\), got U8/);
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {expertWeightFormat: 'int4', quantGroupSize: 16}),
                       /option 'quantGroupSize' must be one of 32, 64, 128 for int4/);
    tf.dispose(Object.values(tensors));
  });
});
