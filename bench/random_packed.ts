/**
 * Random packed expert weights drawn straight as codes (no float32 copy, no quantizer: at Qwen3-30B-A3B's full
 * width the quantizer takes minutes per format and the float32 weights 2.4 GB), for the benchmarks and the demo
 * page (browser-safe: tfjs-core only). Halves get a narrow band of exponents around `std`, int8/int4 uniform codes
 * with small positive scales chosen so the weights' spread is about `std`, mxfp4 scale bytes near log2(std).
 */
import * as tf from '@tensorflow/tfjs-core';

import type {QuantizedExpertWeights} from '../src/index.js';

export interface FormatRow {
  label: string;
  format: QuantizedExpertWeights['format'];
  groupSize?: number;
  zeroPoint?: boolean;
}

/** Host arrays of one packed weight [E,K,N] (the layout FusedMoE stores). */
export interface HostPacked {
  format: FormatRow['format'];
  shape: [number, number, number];
  groupSize: number;
  zeroPoint: boolean;
  values: Int32Array | Float32Array;
  scales?: Float32Array | Int32Array;
  zeroPoints?: Float32Array;
}

/** xorshift32 words (uint32), seeded. */
export function xorshiftWords(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

function codesPerWord(format: FormatRow['format']): number {
  return format === 'float32' ? 1 : format === 'int8' ? 4 : format === 'int4' || format === 'mxfp4' ? 8 : 2;
}

/** Random weights [E,Kd,N] of the format, as its host arrays. */
export function randomPackedWeights(f: FormatRow, E: number, Kd: number, N: number, std: number,
                                    nextWord: () => number): HostPacked {
  const kw = Math.ceil(Kd / codesPerWord(f.format));
  const groupSize = f.format === 'int8' ? (f.groupSize ?? Kd) : f.groupSize ?? 0;
  const out: HostPacked = {format: f.format, shape: [E, Kd, N], groupSize, zeroPoint: f.zeroPoint === true,
                           values: new Int32Array(0)};
  const n = E * kw * N;
  if (f.format === 'float32') {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = ((nextWord() / 4294967296) - 0.5) * 3.4 * std;
    out.values = v;
    return out;
  }
  const v = new Int32Array(n);
  // Halves: sign, a 2-bit spread of exponents around std, random mantissa.
  const e16 = Math.round(Math.log2(std)) + 15 - 1, e8 = Math.round(Math.log2(std)) + 127 - 1;
  for (let i = 0; i < n; i++) {
    const r = nextWord();
    if (f.format === 'float16') {
      const lo = (r & 0x83ff) | ((e16 + ((r >>> 10) & 3)) << 10);
      const r2 = nextWord();
      const hi = (r2 & 0x83ff) | ((e16 + ((r2 >>> 10) & 3)) << 10);
      v[i] = lo | (hi << 16);
    } else if (f.format === 'bfloat16') {
      const lo = (r & 0x807f) | ((e8 + ((r >>> 7) & 3)) << 7);
      const r2 = nextWord();
      const hi = (r2 & 0x807f) | ((e8 + ((r2 >>> 7) & 3)) << 7);
      v[i] = lo | (hi << 16);
    } else {
      v[i] = r | 0;
    }
  }
  out.values = v;
  if (f.format === 'float16' || f.format === 'bfloat16') return out;
  const G = Math.ceil(Kd / groupSize);
  if (f.format === 'mxfp4') {
    const s = new Int32Array(E * G * Math.ceil(N / 4));
    const b = Math.round(Math.log2(std)) + 127 - 2;
    for (let i = 0; i < s.length; i++) {
      const r = nextWord();
      s[i] = ((b + (r & 1)) | ((b + ((r >>> 1) & 1)) << 8) | ((b + ((r >>> 2) & 1)) << 16) | ((b + ((r >>> 3) & 1)) << 24));
    }
    out.scales = s;
    return out;
  }
  const s = new Float32Array(E * G * N);
  const base = f.format === 'int8' ? std / 64 : std / 4;
  for (let i = 0; i < s.length; i++) s[i] = base * (0.75 + 0.5 * nextWord() / 4294967296);
  out.scales = s;
  if (f.zeroPoint) {
    const z = new Float32Array(E * G * N);
    for (let i = 0; i < z.length; i++) z[i] = 4 + (nextWord() % 9);
    out.zeroPoints = z;
  }
  return out;
}

/** The host arrays as tensors on the active backend: a QuantizedExpertWeights, or the float32 [E,K,N] tensor. */
export function toQuantized(p: HostPacked): QuantizedExpertWeights | tf.Tensor3D {
  const [e, kd, n] = p.shape;
  if (p.format === 'float32') return tf.tensor3d(p.values as Float32Array, p.shape);
  const kw = Math.ceil(kd / codesPerWord(p.format));
  const G = p.groupSize > 0 ? Math.ceil(kd / p.groupSize) : 0;
  return {
    format: p.format, shape: p.shape, transposed: false, groupSize: p.groupSize, zeroPoint: p.zeroPoint,
    values: tf.tensor3d(p.values as Int32Array, [e, kw, n], 'int32'),
    scales: p.scales == null ? undefined : p.format === 'mxfp4' ?
        tf.tensor3d(p.scales as Int32Array, [e, G, Math.ceil(n / 4)], 'int32') :
        tf.tensor3d(p.scales as Float32Array, [e, G, n]),
    zeroPoints: p.zeroPoints == null ? undefined : tf.tensor3d(p.zeroPoints, [e, G, n]),
  };
}
