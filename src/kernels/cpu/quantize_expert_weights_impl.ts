/**
 * The quantizer of docs/formats.md on host arrays: float32 [E,K,N] (or [E,N,K] when transposed) -> packed codes,
 * scales and zero points. Every intermediate is a float32 value (Math.fround), so the rule reads the same in any
 * language: scale = fround(range / qmax), code = RNE(fround(w / scale)) clamped.
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
        let lo = 0, hi = 0, absMax = 0;
        for (let kk = 0; kk < kLen; kk++) {
          const v = w[c.elementBase + (k0 + kk) * c.elementStride];
          group[kk] = v;
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
          absMax = Math.max(absMax, Math.abs(v));
        }
        if (format === 'mxfp4') {
          // OCP MX: the block exponent puts the largest magnitude in [4, 8), elements saturate at 6.
          const x = absMax === 0 ? -127 : Math.max(-127, Math.min(127, floorLog2(absMax) - 2));
          scales[si] |= (x + 127) << sShift;
                    const factor = 2 ** -x;
          for (let kk = 0; kk < kLen; kk++) codes[kk] = floatToE2M1(group[kk] * factor);
        } else if (format === 'int8' || !l.zeroPoint) {
          const qMax = format === 'int8' ? 127 : 7, offset = format === 'int8' ? 0 : 8;
          const scale = fround(absMax / qMax);
          scales[si] = scale;
          for (let kk = 0; kk < kLen; kk++) {
            const q = scale === 0 ? 0 : roundHalfEven(fround(group[kk] / scale));
            codes[kk] = (Math.max(-qMax, Math.min(qMax, q)) + offset) & 0xff;
          }
        } else {
          const scale = fround(fround(hi - lo) / 15);
          const zero = scale === 0 ? 0 : Math.max(0, Math.min(15, roundHalfEven(fround(-lo / scale))));
          scales[si] = scale;
          zeroPoints![si] = zero;
          for (let kk = 0; kk < kLen; kk++) {
            const q = scale === 0 ? 0 : roundHalfEven(fround(group[kk] / scale)) + zero;
            codes[kk] = Math.max(0, Math.min(15, q));
          }
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
