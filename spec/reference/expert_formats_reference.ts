/**
 * Independent decoder of the expert weight formats, written from docs/formats.md only (never from src/): the
 * float32 value of every weight of a QuantizedExpertWeights given its host arrays. Values are returned as
 * float64 numbers holding float32 values (each product rounded once with Math.fround, as the doc defines).
 */

export type RefFormat = 'float32' | 'float16' | 'bfloat16' | 'int8' | 'int4' | 'mxfp4';

export interface RefPacked {
  format: RefFormat;
  shape: number[];        // [E,K,N] or [E,N,K] when transposed
  transposed: boolean;
  groupSize: number;
  zeroPoint: boolean;
  values: ArrayLike<number>;
  scales?: ArrayLike<number>;
  zeroPoints?: ArrayLike<number>;
}

/** binary16 bit pattern -> value (doc section 3). */
export function refHalf(h: number): number {
  const s = (h >> 15) & 1, ex = (h >> 10) & 31, m = h & 1023;
  const sign = s ? -1 : 1;
  if (ex === 31) return m === 0 ? sign * Infinity : NaN;
  if (ex === 0) return sign * m * Math.pow(2, -24);
  return sign * (1 + m / 1024) * Math.pow(2, ex - 15);
}

/** bfloat16 bit pattern -> value: the top half of a binary32. */
export function refBfloat16(b: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint16(0, b, false);
  view.setUint16(2, 0, false);
  return view.getFloat32(0, false);
}

export const REF_E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

export function refE2M1(code: number): number {
  const magnitude = REF_E2M1[code & 7];
  return code & 8 ? -magnitude : magnitude;
}

/** Field `index` (lowest first) of width `bits` in the 32-bit word. */
function field(word: number, index: number, bits: number): number {
  return Math.floor((word >>> 0) / Math.pow(2, index * bits)) % Math.pow(2, bits);
}

/** Flat float32 values of the logical tensor (shape q.shape), decoded element by element. */
export function refDequantize(q: RefPacked): Float64Array {
  const [E, A, B] = q.shape;
  const [K, N] = q.transposed ? [B, A] : [A, B];
  const out = new Float64Array(E * K * N);
  const bits = q.format === 'float32' ? 32 : q.format === 'float16' || q.format === 'bfloat16' ? 16 :
      q.format === 'int8' ? 8 : 4;
  const per = 32 / bits;
  const Kw = Math.ceil(K / per);
  const G = q.groupSize > 0 ? Math.ceil(K / q.groupSize) : 0;
  for (let e = 0; e < E; e++) {
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const outIndex = q.transposed ? (e * N + n) * K + k : (e * K + k) * N + n;
        if (q.format === 'float32') {
          out[outIndex] = q.values[outIndex];
          continue;
        }
        const word = q.transposed ? (e * N + n) * Kw + Math.floor(k / per) : (e * Kw + Math.floor(k / per)) * N + n;
        const c = field(q.values[word], k % per, bits);
        const g = Math.floor(k / Math.max(1, q.groupSize));
        const sIndex = q.transposed ? (e * N + n) * G + g : (e * G + g) * N + n;
        let w: number;
        switch (q.format) {
          case 'float16': w = refHalf(c); break;
          case 'bfloat16': w = refBfloat16(c); break;
          case 'int8': w = Math.fround(q.scales![sIndex] * (c >= 128 ? c - 256 : c)); break;
          case 'int4': {
            const z = q.zeroPoint ? q.zeroPoints![sIndex] : 8;
            w = Math.fround(q.scales![sIndex] * (c - z));
            break;
          }
          case 'mxfp4': {
            // E8M0 bytes of the [E,G,N] / [E,N,G] array, four per word along its last axis.
            const last = q.transposed ? G : N, lastIndex = q.transposed ? g : n;
            const rowIndex = q.transposed ? e * N + n : e * G + g;
            const byteWord = q.scales![rowIndex * Math.ceil(last / 4) + Math.floor(lastIndex / 4)];
            const b = field(byteWord, lastIndex % 4, 8);
            w = b === 255 ? NaN : Math.fround(refE2M1(c) * Math.pow(2, b - 127));
            break;
          }
          default: throw new Error(`unknown format ${q.format}`);
        }
        out[outIndex] = w;
      }
    }
  }
  return out;
}
