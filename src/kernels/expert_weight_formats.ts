/**
 * Expert weight formats (docs/formats.md): the storage layout of each format and the scalar codecs that every
 * host path (quantizer, cpu kernels, checkpoint converters) shares. The WGSL and stock-op decoders implement the
 * same definitions; docs/formats.md is the contract all of them follow.
 *
 * A weight tensor is logically [E, K, N] (in x out), or [E, N, K] when `transposed` (torch Linear, out x in,
 * what batchedGemm's transposeRhs reads). Codes are packed along K into int32 words, the first K index in the
 * lowest bits, so that a row-major byte stream of K-contiguous codes (gpt-oss blocks, raw bf16) is already the
 * transposed layout, and in the untransposed layout neighbouring output columns are neighbouring words.
 */

export const EXPERT_WEIGHT_FORMATS = ['float32', 'float16', 'bfloat16', 'int8', 'int4', 'mxfp4'] as const;
/** An expert weight storage format (docs/formats.md). */
export type ExpertWeightFormat = typeof EXPERT_WEIGHT_FORMATS[number];

/** The group length along K of every mxfp4 block (OCP Microscaling). */
export const MXFP4_BLOCK = 32;
/** The group sizes int4 accepts. */
export const INT4_GROUP_SIZES = [32, 64, 128] as const;

export function bitsPerCode(format: ExpertWeightFormat): number {
  switch (format) {
    case 'float32': return 32;
    case 'float16': case 'bfloat16': return 16;
    case 'int8': return 8;
    case 'int4': case 'mxfp4': return 4;
  }
}

/** Codes per int32 word (1 for float32, whose values tensor is the float tensor itself). */
export function codesPerWord(format: ExpertWeightFormat): number {
  return 32 / bitsPerCode(format);
}

export function hasScales(format: ExpertWeightFormat): boolean {
  return format === 'int8' || format === 'int4' || format === 'mxfp4';
}

/** Everything that fixes where a code, scale or zero point lives. */
export interface ExpertWeightLayout {
  format: ExpertWeightFormat;
  numExperts: number;  // E
  depth: number;       // K (the reduction axis)
  width: number;       // N (output columns)
  transposed: boolean;
  /** Along K; 0 for formats without scales. */
  groupSize: number;
  zeroPoint: boolean;
}

export function numGroups(l: ExpertWeightLayout): number {
  return l.groupSize === 0 ? 0 : Math.ceil(l.depth / l.groupSize);
}

/** Words per column along K (K itself for float32). */
export function wordsPerColumn(l: ExpertWeightLayout): number {
  return Math.ceil(l.depth / codesPerWord(l.format));
}

/** Shape of the `values` tensor: int32 packed codes, or the float32 tensor itself for 'float32'. */
export function valuesShape(l: ExpertWeightLayout): [number, number, number] {
  const kw = wordsPerColumn(l);
  return l.transposed ? [l.numExperts, l.width, kw] : [l.numExperts, kw, l.width];
}

/**
 * Shape of `scales` (and `zeroPoints`): float32 [E,G,N] ([E,N,G] transposed) for int8/int4; for mxfp4 the E8M0
 * bytes of that [E,G,N] / [E,N,G] array, four per int32 word along its last axis.
 */
export function scalesShape(l: ExpertWeightLayout): [number, number, number] | null {
  if (!hasScales(l.format)) return null;
  const g = numGroups(l);
  const [rows, cols] = l.transposed ? [l.width, g] : [g, l.width];
  return [l.numExperts, rows, l.format === 'mxfp4' ? Math.ceil(cols / 4) : cols];
}

/** The float tensor shape the weights stand for: [E,K,N], or [E,N,K] when transposed. */
export function logicalShape(l: ExpertWeightLayout): [number, number, number] {
  return l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width];
}

// ---- scalar codecs ------------------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function floatBits(v: number): number {
  f32Scratch[0] = v;
  return u32Scratch[0];
}

export function bitsToFloat(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0];
}

/** Rounds q >= 0 (an integer significand with `drop` extra low bits) to nearest, ties to even. */
function roundDropBits(q: number, drop: number): number {
  const unit = 2 ** drop;
  const kept = Math.floor(q / unit), rest = q - kept * unit, half = unit / 2;
  return rest > half || (rest === half && kept % 2 === 1) ? kept + 1 : kept;
}

/**
 * float32 -> IEEE binary16 bits, round to nearest even; overflow gives +-Inf, NaN the quiet NaN 0x7e00 with the
 * sign kept, values under half the smallest subnormal +-0.
 */
export function floatToHalfBits(v: number): number {
  const x = floatBits(v);
  const sign = (x >>> 16) & 0x8000, exponent = (x >>> 23) & 0xff, mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | (mantissa !== 0 ? 0x7e00 : 0x7c00);
  if (exponent === 0) return sign;  // float32 subnormals are far below half's smallest subnormal (2^-24)
  const e = exponent - 112;  // the half biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e >= 1) {
    // A carry out of the mantissa lands in the exponent, up to 0x7c00 (Inf): exactly the IEEE result.
    return sign | Math.min(0x7c00, roundDropBits(e * 1024 * 8192 + mantissa, 13));
  }
  const drop = 14 - e;  // subnormal half: value / 2^-24 = (2^23 + mantissa) / 2^drop
  return drop > 24 ? sign : sign | roundDropBits(0x800000 + mantissa, drop);
}

export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exponent = (h >>> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent === 31) return mantissa !== 0 ? NaN : sign * Infinity;
  return exponent === 0 ? sign * mantissa * 2 ** -24 : sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

let halfTable: Float32Array | null = null;
/** halfBitsToFloat for all 65536 patterns, built on first use (the inner loops index it). */
export function halfToFloatTable(): Float32Array {
  if (halfTable == null) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfBitsToFloat(h);
  }
  return halfTable;
}

/** float32 -> bfloat16 bits: the top 16 bits rounded to nearest even; NaN becomes the quiet 0x7fc0 (sign kept). */
export function floatToBfloat16Bits(v: number): number {
  const x = floatBits(v);
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return roundDropBits(x, 16);
}

export function bfloat16BitsToFloat(b: number): number {
  return bitsToFloat((b & 0xffff) << 16);
}

/** E2M1 code (bit 3 sign, bits 2-1 exponent, bit 0 mantissa) -> value. */
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** E8M0 byte -> 2^(byte - 127); 255 is NaN. */
export function e8m0ToFloat(byte: number): number {
  return byte === 255 ? NaN : 2 ** (byte - 127);
}

/** x -> nearest integer, ties to even (x finite). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** |x| (already divided by the block scale) -> E2M1 code: nearest value, ties to the even code, saturating at 6. */
export function floatToE2M1(x: number): number {
  // Midpoints between neighbouring values; at a midpoint the even code (0, 2, 4, 6) wins, hence <= vs <.
  const a = Math.abs(x);
  const code = a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 :
      a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return (x < 0 || Object.is(x, -0) ? 8 : 0) | code;
}

/** floor(log2(|x|)) for a finite non-zero float32 x, exactly (subnormals included). */
export function floorLog2(x: number): number {
  const bits = floatBits(x) & 0x7fffffff, exponent = bits >>> 23;
  if (exponent !== 0) return exponent - 127;
  return 31 - Math.clz32(bits) - 149;
}

// ---- element addressing -------------------------------------------------------------------------------------

/** Word index and bit shift of code (e, k, n). */
export function codeAddress(l: ExpertWeightLayout, e: number, k: number, n: number): [number, number] {
  const per = codesPerWord(l.format), kw = wordsPerColumn(l);
  const word = l.transposed ? (e * l.width + n) * kw + Math.floor(k / per) :
      (e * kw + Math.floor(k / per)) * l.width + n;
  return [word, (k % per) * bitsPerCode(l.format)];
}

/** Index into scales/zeroPoints (float formats) of group g, column n; for mxfp4 the word and the byte's shift. */
export function scaleAddress(l: ExpertWeightLayout, e: number, g: number, n: number): [number, number] {
  const groups = numGroups(l);
  if (l.format !== 'mxfp4') return [l.transposed ? (e * l.width + n) * groups + g : (e * groups + g) * l.width + n, 0];
  if (l.transposed) return [(e * l.width + n) * Math.ceil(groups / 4) + (g >> 2), (g & 3) * 8];
  return [(e * groups + g) * Math.ceil(l.width / 4) + (n >> 2), (n & 3) * 8];
}

/** Host arrays of one QuantizedExpertWeights. */
export interface ExpertWeightData {
  values: Int32Array | Float32Array;
  scales: Float32Array | Int32Array | null;
  zeroPoints: Float32Array | null;
}

/**
 * Decodes one column strip: out[kk] = w(e, k0 + kk, n) for kk < kLen, as float32 (the definition in
 * docs/formats.md). The cpu kernel calls this per tile, so it never holds an expert in float32.
 */
export function decodeColumn(
    l: ExpertWeightLayout, d: ExpertWeightData, e: number, n: number, k0: number, kLen: number,
    out: Float32Array, outOffset: number, outStride: number): void {
  const {format} = l;
  const values = d.values;
  if (format === 'float32') {
    for (let kk = 0; kk < kLen; kk++) {
      const k = k0 + kk;
      out[outOffset + kk * outStride] =
          values[l.transposed ? (e * l.width + n) * l.depth + k : (e * l.depth + k) * l.width + n];
    }
    return;
  }
  const per = codesPerWord(format), bits = bitsPerCode(format), kw = wordsPerColumn(l);
  const wordStride = l.transposed ? 1 : l.width;
  const columnBase = l.transposed ? (e * l.width + n) * kw : e * kw * l.width + n;
  const half = format === 'float16' ? halfToFloatTable() : null;
  const mask = (2 ** bits - 1) >>> 0;
  // The group's scale and zero point, looked up once per group the strip crosses.
  let group = -1, scale = 0, zero = 8;
  for (let kk = 0; kk < kLen; kk++) {
    const k = k0 + kk;
    const code = (values[columnBase + Math.floor(k / per) * wordStride] >>> ((k % per) * bits)) & mask;
    let v: number;
    if (format === 'float16') {
      v = half![code];
    } else if (format === 'bfloat16') {
      v = bfloat16BitsToFloat(code);
    } else {
      const g = Math.floor(k / l.groupSize);
      if (g !== group) {
        group = g;
        const [si, shift] = scaleAddress(l, e, g, n);
        scale = format === 'mxfp4' ? e8m0ToFloat((d.scales![si] >>> shift) & 0xff) : d.scales![si];
        if (format === 'int4') zero = d.zeroPoints != null ? d.zeroPoints[si] : 8;
      }
      v = format === 'mxfp4' ? E2M1_VALUES[code] * scale :
          format === 'int8' ? scale * ((code << 24) >> 24) : scale * (code - zero);
    }
    out[outOffset + kk * outStride] = v;
  }
}
