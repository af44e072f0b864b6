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

// ---- the int4 quantizer (docs/formats.md section 4), written from the doc's rule ----------------------------

/** x (finite) to the nearest integer, ties to the even one. */
export function refRoundEven(x: number): number {
  const down = Math.floor(x), rest = x - down;
  if (rest < 0.5) return down;
  if (rest > 0.5) return down + 1;
  return down % 2 === 0 ? down : down + 1;
}

/** The doc's candidate lists: symmetric s = m / d over these d, zero point ranges [lo, hi] * f over these f. */
export const REF_INT4_DIVISORS = [-8, -8.5, -9, 7, 7.5];
export const REF_INT4_FACTORS = [1, 0.95, 0.9, 0.85];

interface RefGroupCodes {codes: number[]; scale: number; zero: number}

/** One group of float32 weights -> its int4 codes (0..15), scale and zero point (8 when symmetric). */
export function refQuantizeInt4Group(w: readonly number[], zeroPoint: boolean): RefGroupCodes {
  const f = Math.fround;
  type Candidate = {scale: number, zero: number, code: (x: number) => number};
  const candidates: Candidate[] = [];
  if (!zeroPoint) {
    let m = 0;
    for (const x of w) if (Math.abs(x) > Math.abs(m)) m = x;
    for (const d of REF_INT4_DIVISORS) {
      const scale = f(m / d);
      candidates.push({scale, zero: 8, code: x => Math.min(7, Math.max(-8, refRoundEven(f(x / scale)))) + 8});
    }
  } else {
    const lo = Math.min(0, ...w), hi = Math.max(0, ...w);
    for (const factor of REF_INT4_FACTORS) {
      const l = f(lo * factor), h = f(hi * factor);
      const scale = f(f(h - l) / 15);
      const zero = Math.min(15, Math.max(0, refRoundEven(f(-l / scale))));
      candidates.push({scale, zero, code: x => Math.min(15, Math.max(0, refRoundEven(f(x / scale)) + zero))});
    }
  }
  let chosen: Candidate | null = null, least = Infinity;
  for (const c of candidates) {
    if (c.scale === 0) continue;  // no grid (the doc: such a candidate is skipped)
    let sum = 0;
    for (const x of w) {
      const diff = f(c.scale * (c.code(x) - c.zero)) - x;
      sum += diff * diff;
    }
    if (sum < least) {  // strictly smaller: the earlier candidate wins a tie
      least = sum;
      chosen = c;
    }
  }
  if (chosen == null) return {codes: w.map(() => (zeroPoint ? 0 : 8)), scale: 0, zero: zeroPoint ? 0 : 8};
  return {codes: w.map(x => chosen!.code(x)), scale: chosen.scale, zero: chosen.zero};
}

/**
 * float32 weights of shape [E,K,N] (or [E,N,K] when transposed) quantized to int4 by the doc's rule, packed as the
 * doc's section 2 says (eight codes per word along K, the lowest k in the lowest bits; scales [E,G,N] / [E,N,G]).
 */
export function refQuantizeInt4(w: ArrayLike<number>, shape: number[], groupSize: number, zeroPoint: boolean,
                                transposed: boolean): RefPacked {
  const [E, A, B] = shape;
  const [K, N] = transposed ? [B, A] : [A, B];
  const G = Math.ceil(K / groupSize), Kw = Math.ceil(K / 8);
  const values = new Array<number>(E * Kw * N).fill(0);
  const scales = new Array<number>(E * G * N).fill(0);
  const zeroPoints = new Array<number>(E * G * N).fill(0);
  for (let e = 0; e < E; e++) {
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < G; g++) {
        const ks: number[] = [];
        for (let k = g * groupSize; k < Math.min(K, (g + 1) * groupSize); k++) ks.push(k);
        const at = (k: number) => w[transposed ? (e * N + n) * K + k : (e * K + k) * N + n];
        const r = refQuantizeInt4Group(ks.map(at), zeroPoint);
        const sIndex = transposed ? (e * N + n) * G + g : (e * G + g) * N + n;
        scales[sIndex] = r.scale;
        zeroPoints[sIndex] = r.zero;
        ks.forEach((k, i) => {
          const word = transposed ? (e * N + n) * Kw + Math.floor(k / 8) : (e * Kw + Math.floor(k / 8)) * N + n;
          values[word] += r.codes[i] * Math.pow(2, 4 * (k % 8));
        });
      }
    }
  }
  // Words as int32, as the packed tensor holds them.
  return {format: 'int4', shape, transposed, groupSize, zeroPoint, values: values.map(v => v | 0), scales,
    ...(zeroPoint ? {zeroPoints} : {})};
}
