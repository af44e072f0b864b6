/**
 * The quantizer of docs/formats.md on host arrays: float32 [E,K,N] (or [E,N,K] when transposed) -> packed codes,
 * scales and zero points. Every intermediate is a float32 value (Math.fround), so the rule reads the same in any
 * language: scale = fround(range / qmax), code = RNE(fround(w / scale)) clamped.
 */
import {
  codeAddress, ExpertWeightData, ExpertWeightLayout, floatToBfloat16Bits, floatToE2M1, floatToHalfBits,
  floorLog2, numGroups, roundHalfEven, scaleAddress, scalesShape, valuesShape,
} from '../expert_weight_formats.js';

const fround = Math.fround;

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** w's flat index of element (e, k, n). */
function elementIndex(l: ExpertWeightLayout, e: number, k: number, n: number): number {
  return l.transposed ? (e * l.width + n) * l.depth + k : (e * l.depth + k) * l.width + n;
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
      for (let k = 0; k < depth; k++) {
        for (let n = 0; n < width; n++) {
          const [word, shift] = codeAddress(l, e, k, n);
          values[word] |= encode(w[elementIndex(l, e, k, n)]) << shift;
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
  for (let e = 0; e < numExperts; e++) {
    for (let g = 0; g < groups; g++) {
      const k0 = g * l.groupSize, kLen = Math.min(l.groupSize, depth - k0);
      for (let n = 0; n < width; n++) {
        const [si, sShift] = scaleAddress(l, e, g, n);
        let lo = 0, hi = 0, absMax = 0;
        for (let kk = 0; kk < kLen; kk++) {
          const v = w[elementIndex(l, e, k0 + kk, n)];
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
          absMax = Math.max(absMax, Math.abs(v));
        }
        if (format === 'mxfp4') {
          // OCP MX: the block exponent puts the largest magnitude in [4, 8), elements saturate at 6.
          const x = absMax === 0 ? -127 : Math.max(-127, Math.min(127, floorLog2(absMax) - 2));
          scales[si] |= (x + 127) << sShift;
          for (let kk = 0; kk < kLen; kk++) codes[kk] = floatToE2M1(w[elementIndex(l, e, k0 + kk, n)] * 2 ** -x);
        } else if (format === 'int8' || !l.zeroPoint) {
          const qMax = format === 'int8' ? 127 : 7, offset = format === 'int8' ? 0 : 8;
          const scale = fround(absMax / qMax);
          scales[si] = scale;
          for (let kk = 0; kk < kLen; kk++) {
            const q = scale === 0 ? 0 : roundHalfEven(fround(w[elementIndex(l, e, k0 + kk, n)] / scale));
            codes[kk] = (Math.max(-qMax, Math.min(qMax, q)) + offset) & 0xff;
          }
        } else {
          const scale = fround(fround(hi - lo) / 15);
          const zero = scale === 0 ? 0 : Math.max(0, Math.min(15, roundHalfEven(fround(-lo / scale))));
          scales[si] = scale;
          zeroPoints![si] = zero;
          for (let kk = 0; kk < kLen; kk++) {
            const q = scale === 0 ? 0 : roundHalfEven(fround(w[elementIndex(l, e, k0 + kk, n)] / scale)) + zero;
            codes[kk] = Math.max(0, Math.min(15, q));
          }
        }
        for (let kk = 0; kk < kLen; kk++) {
          const [word, shift] = codeAddress(l, e, k0 + kk, n);
          values[word] |= codes[kk] << shift;
        }
      }
    }
  }
  return {values, scales, zeroPoints};
}
