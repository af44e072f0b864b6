/**
 * The quantizer of docs/formats.md on host arrays: float32 [E,K,N] (or [E,N,K] when transposed) -> packed codes,
 * scales and zero points. Every intermediate is a float32 value (Math.fround), so the rule reads the same in any
 * language: code = RNE(fround(w / scale)) clamped; int8's scale is fround(max|w| / 127), int4's the candidate of
 * least squared error from a fixed list (the float64 error sum is the only non-float32 step).
 */
import {
  bitsPerCode, codesPerWord, ExpertWeightData, ExpertWeightLayout, floatToBfloat16Bits, floatToE2M1, floatToHalfBits,
  floorLog2, numGroups, roundHalfEven, scaleAddress, scalesShape, valuesShape, wordsPerColumn,
} from '../expert_weight_formats.js';

const fround = Math.fround;

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Where column n of expert e lives: element k at elementBase + k * elementStride of w, its code in word
 * wordBase + floor(k / P) * wordStride. */
function column(l: ExpertWeightLayout, e: number, n: number) {
  const kw = wordsPerColumn(l);
  return l.transposed ?
      {elementBase: (e * l.width + n) * l.depth, elementStride: 1, wordBase: (e * l.width + n) * kw, wordStride: 1} :
      {elementBase: e * l.depth * l.width + n, elementStride: l.width, wordBase: e * kw * l.width + n,
       wordStride: l.width};
}

/** Throws on the first non-finite weight (the integer formats have no code for it). */
function checkFinite(op: string, w: Float32Array, l: ExpertWeightLayout): void {
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i])) {
      const shape = l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width];
      const idx = [Math.floor(i / (shape[1] * shape[2])), Math.floor(i / shape[2]) % shape[1], i % shape[2]];
      throw new Error(`${op}: argument 'w' must hold finite values for format '${l.format}', got ${w[i]} at ` +
          `[${idx.join(',')}]`);
    }
  }
}

export function quantizeExpertWeightsImpl(op: string, w: Float32Array, l: ExpertWeightLayout): ExpertWeightData {
  if (l.format === 'float32') return {values: w.slice(), scales: null, zeroPoints: null};
  const values = new Int32Array(size(valuesShape(l)));
  const {numExperts, depth, width, format} = l;
  if (format === 'float16' || format === 'bfloat16') {
    const encode = format === 'float16' ? floatToHalfBits : floatToBfloat16Bits;
    for (let e = 0; e < numExperts; e++) {
      for (let n = 0; n < width; n++) {
        const c = column(l, e, n);
        for (let k = 0; k < depth; k++) {
          const code = encode(w[c.elementBase + k * c.elementStride]);
          values[c.wordBase + (k >> 1) * c.wordStride] |= code << ((k & 1) * 16);
        }
      }
    }
    return {values, scales: null, zeroPoints: null};
  }
  checkFinite(op, w, l);
  const sShape = scalesShape(l)!;
  const scales = format === 'mxfp4' ? new Int32Array(size(sShape)) : new Float32Array(size(sShape));
  const zeroPoints = l.zeroPoint ? new Float32Array(size(sShape)) : null;
  const groups = numGroups(l);
  const codes = new Int32Array(l.groupSize);
  const group = new Float32Array(l.groupSize);
  const per = codesPerWord(format), bits = bitsPerCode(format);
  for (let e = 0; e < numExperts; e++) {
    for (let n = 0; n < width; n++) {
      const c = column(l, e, n);
      for (let g = 0; g < groups; g++) {
        const k0 = g * l.groupSize, kLen = Math.min(l.groupSize, depth - k0);
        const [si, sShift] = scaleAddress(l, e, g, n);
        let lo = 0, hi = 0, absMax = 0, peak = 0;
        for (let kk = 0; kk < kLen; kk++) {
          const v = w[c.elementBase + (k0 + kk) * c.elementStride];
          group[kk] = v;
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
          if (Math.abs(v) > absMax) {
            absMax = Math.abs(v);
            peak = kk;
          }
        }
        if (format === 'mxfp4') {
          // OCP MX: the block exponent puts the largest magnitude in [4, 8), elements saturate at 6.
          const x = absMax === 0 ? -127 : Math.max(-127, Math.min(127, floorLog2(absMax) - 2));
          scales[si] |= (x + 127) << sShift;
                    const factor = 2 ** -x;
          for (let kk = 0; kk < kLen; kk++) codes[kk] = floatToE2M1(group[kk] * factor);
        } else if (format === 'int8') {
          const scale = fround(absMax / 127);
          scales[si] = scale;
          for (let kk = 0; kk < kLen; kk++) {
            const q = scale === 0 ? 0 : roundHalfEven(fround(group[kk] / scale));
            codes[kk] = Math.max(-127, Math.min(127, q)) & 0xff;
          }
        } else if (!l.zeroPoint) {
          scales[si] = quantizeSymmetricInt4(group, kLen, group[peak], codes);
        } else {
          const [scale, zero] = quantizeInt4WithZero(group, kLen, lo, hi, codes);
          scales[si] = scale;
          zeroPoints![si] = zero;
        }
        for (let kk = 0; kk < kLen; kk++) {
          const k = k0 + kk;
          values[c.wordBase + Math.floor(k / per) * c.wordStride] |= codes[kk] << ((k % per) * bits);
        }
      }
    }
  }
  return {values, scales, zeroPoints};
}

// ---- int4 scale search (docs/formats.md section 4) -----------------------------------------------------------

/**
 * int4 symmetric candidates: s = fround(m / d), m the group's signed weight of largest magnitude. -8 first: m lands
 * on offset -8, so all 16 codes are used (the sign of s picks the side of the grid s * [-8, 7] that reaches |m|).
 * -8.5 and -9 take a finer step and clip the largest weights; 7 is the mirrored grid (m on +7: the rule before the
 * search) and 7.5 its finer step. More candidates gain under 1% of error for their time (docs/formats.md 7).
 */
export const INT4_SYMMETRIC_DIVISORS: readonly number[] = [-8, -8.5, -9, 7, 7.5];

/** int4 with zero point candidates: the range [lo, hi] (0 included) shrunk by each factor, 1 (min/max) first. */
export const INT4_RANGE_FACTORS: readonly number[] = [1, 0.95, 0.9, 0.85];

/** 1.5 * 2^52: (x + ROUND) - ROUND is x rounded to an integer, ties to even, for |x| < 2^51 (IEEE float64 adds). */
const ROUND = 6755399441055744;

/**
 * Squared error of the group under scale s (offsets clamp(RNE(fround(w / s)), -8, 7)), summed in float64 in k order,
 * the reconstruction fround(s * q) what dequantization gives. Returns early once the sum reaches `limit` (the sum
 * only grows, so such a candidate cannot win).
 */
function symmetricError(group: Float32Array, kLen: number, s: number, limit: number): number {
  let sum = 0;
  for (let kk = 0; kk < kLen; kk++) {
    const v = group[kk];
    const r = (fround(v / s) + ROUND) - ROUND;
    const d = fround(s * (r < -8 ? -8 : r > 7 ? 7 : r)) - v;
    sum += d * d;
    if (sum >= limit) return sum;
  }
  return sum;
}

/** Symmetric int4 codes of one group into `codes`; returns the scale (0 for an all-zero group: codes 8). */
function quantizeSymmetricInt4(group: Float32Array, kLen: number, m: number, codes: Int32Array): number {
  let best = 0, bestError = Infinity;
  for (const d of INT4_SYMMETRIC_DIVISORS) {
    const s = fround(m / d);
    if (s === 0) continue;
    const error = symmetricError(group, kLen, s, bestError);
    if (error < bestError) {
      best = s;
      bestError = error;
    }
  }
  for (let kk = 0; kk < kLen; kk++) {
    const r = best === 0 ? 0 : (fround(group[kk] / best) + ROUND) - ROUND;
    codes[kk] = (r < -8 ? -8 : r > 7 ? 7 : r) + 8;
  }
  return best;
}

/** The zero point and scale of range [lo, hi], the candidate `f`; scale 0 when the range rounds to nothing. */
function rangeScale(lo: number, hi: number, f: number): [number, number] {
  const l = fround(lo * f), s = fround(fround(fround(hi * f) - l) / 15);
  return s === 0 ? [0, 0] : [s, Math.max(0, Math.min(15, roundHalfEven(fround(-l / s))))];
}

function zeroPointError(group: Float32Array, kLen: number, s: number, z: number, limit: number): number {
  let sum = 0;
  for (let kk = 0; kk < kLen; kk++) {
    const v = group[kk];
    const c = (fround(v / s) + ROUND) - ROUND + z;
    const d = fround(s * ((c < 0 ? 0 : c > 15 ? 15 : c) - z)) - v;
    sum += d * d;
    if (sum >= limit) return sum;
  }
  return sum;
}

/** int4 codes with a zero point of one group into `codes`; returns [scale, zero] ([0, 0] for an all-zero group). */
function quantizeInt4WithZero(group: Float32Array, kLen: number, lo: number, hi: number, codes: Int32Array):
    [number, number] {
  let best: [number, number] = [0, 0], bestError = Infinity;
  for (const f of INT4_RANGE_FACTORS) {
    const [s, z] = rangeScale(lo, hi, f);
    if (s === 0) continue;
    const error = zeroPointError(group, kLen, s, z, bestError);
    if (error < bestError) {
      best = [s, z];
      bestError = error;
    }
  }
  const [s, z] = best;
  for (let kk = 0; kk < kLen; kk++) {
    const c = s === 0 ? 0 : (fround(group[kk] / s) + ROUND) - ROUND + z;
    codes[kk] = c < 0 ? 0 : c > 15 ? 15 : c;
  }
  return best;
}
