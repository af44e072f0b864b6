// readSafetensors on files built by the test (every dtype, known bit patterns) and on corrupt files.
import * as tf from '@tensorflow/tfjs-core';
import {parseSafetensorsHeader, readSafetensors} from 'tfjs-moe';

import {expectThrowsNoLeak} from '../helpers/util.js';
import {f32Bytes, f32Tensor, f64Bytes, i32Bytes, i64Bytes, RawTensor, u16Bytes, writeSafetensors} from
    './safetensors_writer.js';

/** float16 bit patterns and their exact values (IEEE 754 binary16). */
const F16_CASES: Array<[number, number]> = [
  [0x3C00, 1], [0xC000, -2], [0x7BFF, 65504], [0x0001, 2 ** -24], [0x03FF, 1023 * 2 ** -24], [0x0400, 2 ** -14],
  [0x3555, 0.333251953125], [0x0000, 0], [0x8000, -0], [0x7C00, Infinity], [0xFC00, -Infinity], [0x7E00, NaN],
];
/** bfloat16 bit patterns: the top 16 bits of a float32. */
const BF16_CASES: Array<[number, number]> = [
  [0x3F80, 1], [0xC040, -3], [0x4049, 3.140625], [0x7F80, Infinity], [0xFF80, -Infinity], [0x0001, 2 ** -133],
  [0x7FC0, NaN], [0x8000, -0], [0x4780, 65536],
];

function same(actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (Number.isNaN(expected[i])) expect(actual[i]).withContext(`[${i}]`).toBeNaN();
    else expect(Object.is(actual[i], expected[i]) || actual[i] === expected[i]).withContext(
        `[${i}] ${actual[i]} vs ${expected[i]}`).toBeTrue();
  }
}

describe('readSafetensors', () => {
  it('decodes F32, F16, BF16, F64, I32, I64, I16, I8, U8 and BOOL', async () => {
    const f32 = [1.5, -2.25, 3.4028234663852886e38, 1e-45, 0];
    const i32 = [0, -1, 2147483647, -2147483648, 7, 42];
    const i64 = [0n, -1n, 2147483647n, -2147483648n, 123456789n, -5n];
    const i16 = new DataView(new ArrayBuffer(4));
    i16.setInt16(0, -300, true);
    i16.setInt16(2, 32767, true);
    const file = writeSafetensors({
      'a.f32': f32Tensor(f32, [5]),
      'b.f16': {dtype: 'F16', shape: [3, 4], bytes: u16Bytes(F16_CASES.map(c => c[0]))},
      'c.bf16': {dtype: 'BF16', shape: [9], bytes: u16Bytes(BF16_CASES.map(c => c[0]))},
      'd.f64': {dtype: 'F64', shape: [2], bytes: f64Bytes([0.1, -Infinity])},
      'e.i32': {dtype: 'I32', shape: [2, 3], bytes: i32Bytes(i32)},
      'f.i64': {dtype: 'I64', shape: [3, 2], bytes: i64Bytes(i64)},
      'g.i16': {dtype: 'I16', shape: [2], bytes: new Uint8Array(i16.buffer)},
      'h.i8': {dtype: 'I8', shape: [3], bytes: new Uint8Array([0xFF, 0x7F, 0x80])},
      'i.u8': {dtype: 'U8', shape: [3], bytes: new Uint8Array([0xFF, 0, 7])},
      'j.bool': {dtype: 'BOOL', shape: [3], bytes: new Uint8Array([1, 0, 1])},
      'k.empty': f32Tensor([], [0, 3]),
      'l.scalar': f32Tensor([9], []),
    }, {format: 'pt'});
    const before = tf.memory().numTensors;
    const t = readSafetensors(file);
    expect(tf.memory().numTensors).toBe(before + 12);
    expect(Object.keys(t).sort()).toEqual(['a.f32', 'b.f16', 'c.bf16', 'd.f64', 'e.i32', 'f.i64', 'g.i16', 'h.i8',
      'i.u8', 'j.bool', 'k.empty', 'l.scalar']);
    same(await t['a.f32'].data(), Float32Array.from(f32));
    expect(t['b.f16'].shape).toEqual([3, 4]);
    expect(t['b.f16'].dtype).toBe('float32');
    same(await t['b.f16'].data(), F16_CASES.map(c => c[1]));
    same(await t['c.bf16'].data(), BF16_CASES.map(c => c[1]));
    same(await t['d.f64'].data(), Float32Array.from([0.1, -Infinity]));
    expect(t['e.i32'].dtype).toBe('int32');
    same(await t['e.i32'].data(), i32);
    expect(t['f.i64'].dtype).toBe('int32');
    expect(t['f.i64'].shape).toEqual([3, 2]);
    same(await t['f.i64'].data(), i64.map(Number));
    same(await t['g.i16'].data(), [-300, 32767]);
    same(await t['h.i8'].data(), [-1, 127, -128]);
    same(await t['i.u8'].data(), [255, 0, 7]);
    expect(t['j.bool'].dtype).toBe('bool');
    same(await t['j.bool'].data(), [1, 0, 1]);
    expect(t['k.empty'].shape).toEqual([0, 3]);
    expect(t['l.scalar'].shape).toEqual([]);
    tf.dispose(Object.values(t));
    expect(parseSafetensorsHeader(file).metadata).toEqual({format: 'pt'});
  });

  it('accepts an ArrayBuffer and an unaligned Uint8Array view, and reads a subset by name', async () => {
    const file = writeSafetensors({x: {dtype: 'U8', shape: [1], bytes: new Uint8Array([3])},
      y: f32Tensor([1, 2, 3], [3]), z: {dtype: 'BF16', shape: [1], bytes: u16Bytes([0x3F80])}});
    const shifted = new Uint8Array(file.length + 3);
    shifted.set(file, 3);
    for (const input of [file.buffer.slice(0) as ArrayBuffer, shifted.subarray(3)]) {
      const t = readSafetensors(input, {names: ['y', 'z']});
      expect(Object.keys(t).sort()).toEqual(['y', 'z']);
      same(await t.y.data(), [1, 2, 3]);
      same(await t.z.data(), [1]);
      tf.dispose(Object.values(t));
    }
    const some = readSafetensors(file, {names: name => name === 'x'});
    expect(Object.keys(some)).toEqual(['x']);
    tf.dispose(Object.values(some));
    expectThrowsNoLeak(() => readSafetensors(file, {names: ['nope']}), /requested tensors not in the file: nope/);
  });

  it('rejects I64 values outside the int32 range, naming the tensor, with no leak', () => {
    for (const bad of [2147483648n, -2147483649n, 2n ** 40n]) {
      const file = writeSafetensors({ok: f32Tensor([1], [1]), ids: {dtype: 'I64', shape: [2], bytes: i64Bytes([1n, bad])}});
      expectThrowsNoLeak(() => readSafetensors(file),
          new RegExp(`tensor 'ids' \\(I64\\) holds ${bad} at flat index 1, outside the int32 range`));
    }
  });

  describe('corrupt input', () => {
    const good: Record<string, RawTensor> = {a: f32Tensor([1, 2], [2]), b: f32Tensor([3, 4, 5, 6], [2, 2])};
    const cases: Array<[string, () => Uint8Array | ArrayBuffer, RegExp]> = [
      ['too short', () => new Uint8Array(5), /too short for the 8-byte header length/],
      ['header length past the end', () => {
        const f = writeSafetensors(good);
        new DataView(f.buffer).setUint32(0, f.length, true);
        return f;
      }, /not a safetensors file \(header length \d+ exceeds the file size \d+\)/],
      ['absurd header length', () => {
        const f = writeSafetensors(good);
        new DataView(f.buffer).setUint32(4, 1, true);
        return f;
      }, /not a safetensors file$/],
      ['header not JSON', () => {
        const f = writeSafetensors(good);
        f[8] = 0x5B;  // '[' opens an array that never closes
        return f;
      }, /header is not valid UTF-8 JSON/],
      ['header a JSON array', () => {
        const json = new TextEncoder().encode('[1,2]   ');
        const f = new Uint8Array(8 + json.length);
        new DataView(f.buffer).setUint32(0, json.length, true);
        f.set(json, 8);
        return f;
      }, /header must be a JSON object/],
      ['unknown dtype', () => writeSafetensors(good, undefined, h => { (h.a as {dtype: string}).dtype = 'F8_E4M3'; }),
        /tensor 'a' has unsupported dtype "F8_E4M3"/],
      ['negative dimension', () => writeSafetensors(good, undefined, h => { (h.b as {shape: number[]}).shape = [-2, -2]; }),
        /tensor 'b' has an invalid shape \[-2,-2\]/],
      ['offsets out of order', () => writeSafetensors(good, undefined, h => {
        (h.a as {data_offsets: number[]}).data_offsets = [8, 0];
      }), /tensor 'a' has invalid data_offsets \[8,0\]/],
      ['size does not match shape', () => writeSafetensors(good, undefined, h => { (h.b as {shape: number[]}).shape = [3]; }),
        /tensor 'b' \(F32 \[3\]\) needs 12 bytes but data_offsets span 16/],
      ['overlapping tensors', () => writeSafetensors(good, undefined, h => {
        (h.b as {data_offsets: number[]}).data_offsets = [4, 20];
      }), /tensor 'b' starts at byte 4 but the previous data ends at 8 \(overlap or hole\)/],
      ['a hole', () => writeSafetensors({a: f32Tensor([1, 2], [2]), pad: f32Tensor([0], [1]), b: f32Tensor([3], [1])},
        undefined, h => { delete h.pad; }), /tensor 'b' starts at byte 12 but the previous data ends at 8/],
      ['offsets past the data', () => writeSafetensors(good, undefined, h => {
        (h.b as {data_offsets: number[]}).data_offsets = [8, 28];
        (h.b as {shape: number[]}).shape = [5];
      }), /the tensors cover 28 data bytes but the file holds 24 after the header/],
      ['trailing bytes', () => {
        const f = writeSafetensors(good);
        const g = new Uint8Array(f.length + 4);
        g.set(f);
        return g;
      }, /the tensors cover 24 data bytes but the file holds 28 after the header/],
      ['truncated data', () => writeSafetensors(good).subarray(0, -4), /cover 24 data bytes but the file holds 20/],
      ['bad metadata', () => writeSafetensors(good, {n: 1 as unknown as string}), /__metadata__ must be an object of strings/],
      ['not bytes', () => 'abc' as unknown as Uint8Array, /argument 'bytes' must be a Uint8Array or an ArrayBuffer/],
    ];
    for (const [name, make, pattern] of cases) {
      it(`throws on ${name}`, () => {
        expectThrowsNoLeak(() => readSafetensors(make()), pattern);
      });
    }
  });
});
