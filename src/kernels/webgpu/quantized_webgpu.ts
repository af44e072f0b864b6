/**
 * WGSL over packed expert weights (docs/formats.md), generated per format from one description:
 *
 * - the element decoder `weightAt(e, k, n)`: any layout, one weight at a time (the dequantization program, and the
 *   GEMM loads of the transposed or scalar layouts);
 * - the word decoders of the GEMM fast loads ([E,K,N] layout, N % 4 == 0): one vec4<u32> load brings the words of
 *   four neighbouring columns, i.e. P = 32 / bits consecutive k of each, and `codeRow(c, j)` turns code j of the
 *   four words into a vec4<f32> (halves through unpack2x16float, no shader-f16 needed). The GEMM programs
 *   (batched_gemm_webgpu.ts) decode in their loads: no dequantized copy of the weights ever exists.
 *
 * Decoding is integer and bit arithmetic only, so each decoded weight equals the host definition exactly (GPUs may
 * flush the subnormal results of float16 subnormals or tiny mxfp4 scales to zero: see docs/formats.md).
 */
import {bitsPerCode, codesPerWord, ExpertWeightLayout, hasScales} from '../expert_weight_formats.js';
import {FLAT_LAYOUT, flatDispatch, ProgramUniform, WebGPUProgram} from './webgpu_util.js';

export const DEQUANT_WORKGROUP = 64;

/** The layout's shape as uniforms (the WGSL bakes only format, orientation and zero-point mode). */
export const LAYOUT_UNIFORMS = 'numExperts : i32, depth : i32, width : i32, groupSize : i32,';
export function layoutUniforms(l: ExpertWeightLayout): ProgramUniform[] {
  return [l.numExperts, l.depth, l.width, Math.max(1, l.groupSize)].map(v => ({type: 'int32', data: [v]}));
}

/** The variable names the decoders read, in input order. */
export function weightVariableNames(l: ExpertWeightLayout): string[] {
  const names = ['packed'];
  if (hasScales(l.format)) names.push('scales');
  if (l.zeroPoint) names.push('zeros');
  return names;
}

/** Format, orientation, zero-point mode and group size: everything a decoder bakes in. */
export function layoutKey(l: ExpertWeightLayout): string {
  return `${l.format}_t${+l.transposed}_z${+l.zeroPoint}_g${l.groupSize}`;
}

/** WGSL expressions of the dimensions a decoder reads (uniforms in one program, shape values in another). */
export interface DecoderDims {
  depth: string;      // K
  width: string;      // N
  groupSize: string;
}

const LAYOUT_DIMS: DecoderDims = {depth: 'uniforms.depth', width: 'uniforms.width', groupSize: 'uniforms.groupSize'};

/** E2M1 and E8M0 on four codes at once (docs/formats.md section 3), shared by both decoder kinds. */
const MXFP4_SNIPPET = `
      fn e2m1x4(c : vec4<u32>) -> vec4<f32> {
        // Codes 2-7 are normal floats: exponent e + 126, mantissa bit m at bit 22; codes 0/1 are 0 and 0.5.
        let e = (c >> vec4<u32>(1u)) & vec4<u32>(3u);
        let m = c & vec4<u32>(1u);
        let normal = ((e + vec4<u32>(126u)) << vec4<u32>(23u)) | (m << vec4<u32>(22u));
        let bits = select(normal, m * 0x3f000000u, e == vec4<u32>(0u));
        return bitcast<vec4<f32>>(bits | ((c & vec4<u32>(8u)) << vec4<u32>(28u)));
      }
      fn e8m0x4(b : vec4<u32>) -> vec4<f32> {
        // 2^(b - 127) as float32 bits: b = 0 is the subnormal 2^-127, b = 255 the quiet NaN (built at run time:
        // WGSL rejects NaN constants).
        let sub = vec4<u32>(0x00400000u);
        return bitcast<vec4<f32>>(select(b << vec4<u32>(23u), sub, b == vec4<u32>(0u)) |
                                  select(vec4<u32>(0u), sub, b == vec4<u32>(255u)));
      }
      fn e8m0Bytes(word : u32) -> vec4<f32> {
        return e8m0x4((vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu));
      }`;

/** WGSL `fn weightAt(e, k, n) -> f32`: element (k, n) of expert e's [K,N] weights, any layout. */
export function weightDecoderSnippet(l: ExpertWeightLayout, dims: DecoderDims = LAYOUT_DIMS): string {
  const t = l.transposed;
  const {depth, width, groupSize} = dims;
  if (l.format === 'float32') {
    const index = t ? `(e * ${width} + n) * ${depth} + k` : `(e * ${depth} + k) * ${width} + n`;
    return `
      fn weightAt(e : i32, k : i32, n : i32) -> f32 { return packed[${index}]; }`;
  }
  const per = codesPerWord(l.format), bits = bitsPerCode(l.format);
  const code = `
      fn codeAt(e : i32, k : i32, n : i32) -> u32 {
        let wordsPerColumn = (${depth} + ${per - 1}) / ${per};
        let word = ${t ? `(e * ${width} + n) * wordsPerColumn + k / ${per}` :
                        `(e * wordsPerColumn + k / ${per}) * ${width} + n`};
        return (bitcast<u32>(packed[word]) >> (u32(k % ${per}) * ${bits}u)) & ${(2 ** bits - 1) >>> 0}u;
      }
      fn groupIndex(e : i32, k : i32, n : i32) -> i32 {
        let groups = (${depth} + ${groupSize} - 1) / ${groupSize};
        let g = k / ${groupSize};
        return ${t ? `(e * ${width} + n) * groups + g` : `(e * groups + g) * ${width} + n`};
      }`;
  switch (l.format) {
    case 'float16':
      return `${code}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
        // Bit by bit rather than unpack2x16float: the dequantization is exact for subnormals, Inf and NaN too.
        let h = codeAt(e, k, n);
        let sign = (h & 0x8000u) << 16u;
        let exponent = (h >> 10u) & 0x1fu;
        let mantissa = h & 0x3ffu;
        if (exponent == 0u) {
          // Subnormal half: mantissa * 2^-24, exact in f32.
          let magnitude = f32(mantissa) * 5.9604644775390625e-8;
          return select(magnitude, -magnitude, sign != 0u);
        }
        if (exponent == 31u) { return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); }
        return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
      }`;
    case 'bfloat16':
      return `${code}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 { return bitcast<f32>(codeAt(e, k, n) << 16u); }`;
    case 'int8':
      return `${code}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
        return scales[groupIndex(e, k, n)] * f32(bitcast<i32>(codeAt(e, k, n) << 24u) >> 24u);
      }`;
    case 'int4':
      return `${code}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
        let gi = groupIndex(e, k, n);
        return scales[gi] * (f32(codeAt(e, k, n)) - ${l.zeroPoint ? 'zeros[gi]' : '8.0'});
      }`;
    case 'mxfp4':
      return `${code}${MXFP4_SNIPPET}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
        let groups = (${depth} + ${groupSize} - 1) / ${groupSize};
        let g = k / ${groupSize};
        ${t ? `let word = (e * ${width} + n) * ((groups + 3) / 4) + g / 4;
        let shift = u32(g % 4) * 8u;` : `let word = (e * groups + g) * ((${width} + 3) / 4) + n / 4;
        let shift = u32(n % 4) * 8u;`}
        let b = (bitcast<u32>(scales[word]) >> shift) & 0xffu;
        return (e2m1x4(vec4<u32>(codeAt(e, k, n))) * e8m0x4(vec4<u32>(b))).x;
      }`;
  }
}

/**
 * The word decoders of the fast loads ([E,K,N], N % 4 == 0; packed, scales and zeros bound as vec4, mxfp4 scales
 * as one i32 word per four columns):
 * - `codeRow(c, j)` (WGSL emitted per constant j): code j of the four words c as vec4<f32>, before the scale; for
 *   int4 the code minus its zero point `z` (8, or the group's zero points).
 * - `groupScale(expert, g, nv)`: the four columns' scale of group g (vec4<f32>); `groupZero` likewise.
 */
export interface WordDecoder {
  /** Codes per word (P). */
  perWord: number;
  /** WGSL helper functions. */
  snippet: string;
  /** vec4<f32> of code j (0 <= j < P) of the vec4<u32> `c`, minus zero point `z` (int4; a vec4<f32> expression). */
  codeRow(c: string, j: number, z: string): string;
  /** WGSL vec4<f32> scale of (expert, group g, vec4 column nv), G groups and NV vec4 columns; null: no scales. */
  groupScale: ((expert: string, g: string, groups: string, nv: string, numVec: string) => string) | null;
  /** The same for zero points (int4 with zero point), else the constant 8 (int4) or null. */
  groupZero: ((expert: string, g: string, groups: string, nv: string, numVec: string) => string) | null;
  /** codeRow's values times this power of two are the codes' values (absent: 1). */
  codeFactor?: number;
  /**
   * codeRow gives 1 + c / 16 (exact, the zero point not subtracted): a sum over one scale group is
   * 16 * (sum(a * v) - (1 + z / 16) * sum(a)) (int4Unit; absent: false).
   */
  unitCodes?: boolean;
}

/** How the word decoders turn integer codes into floats. */
export interface WordDecoderOptions {
  /**
   * int8 / int4 codes without an int -> float conversion instruction (a slow one on some GPUs): the code u as the
   * low mantissa bits of 2^23 (bits 0x4b000000 | u, the float 2^23 + u exactly), minus 2^23 and the offset: the same
   * exact small integer as the conversion gives (absent: false, the conversion).
   */
  exponentBits?: boolean;
  /**
   * mxfp4 codes as float16 bit patterns: sign to bit 15, the 3 exponent/mantissa bits to bits 11-9, so that the
   * half is the E2M1 value times 2^-14 exactly (E2M1's 0.5 a half subnormal), two codes of a word (j, j + 4) per
   * unpack2x16float; codeFactor 2^14 (absent: false, the float32 bits built per code).
   */
  e2m1Half?: boolean;
  /**
   * int4 codes as float16 bit patterns 0x6400 | c (the half 1024 + c exactly), two codes of a word (j, j + 4) per
   * unpack2x16float, minus 1024 + z in float32 (exact) (absent: false).
   */
  int4Half?: boolean;
  /**
   * int4 codes as 1 + c / 16, exact, with no zero point subtracted per code (WordDecoder.unitCodes: the step
   * subtracts it once per group from the lhs sum): 'half' two codes (j, j + 4) as the float16 bit patterns
   * 0x3c00 | c << 6 per unpack2x16float, 'bits' each code as the float32 bits 0x3f800000 | c << 19 (absent: off).
   * Only for steps within one scale group (packedStep falls back to the decoders above otherwise).
   */
  int4Unit?: 'half' | 'bits';
}

// E2M1 codes j and j + 4 of a word shifted so that code j's bits start at bit 9: the two float16 bit patterns.
const E2M1_HALF_SNIPPET = `
      fn e2m1HalfBits(t : vec4<u32>) -> vec4<u32> {
        return (t & vec4<u32>(0x0e000e00u)) | ((t << vec4<u32>(3u)) & vec4<u32>(0x80008000u));
      }`;

export function wordDecoder(l: ExpertWeightLayout, options: WordDecoderOptions = {}): WordDecoder {
  const perWord = codesPerWord(l.format);
  const bits = options.exponentBits === true;
  const u = (v: number) => `vec4<u32>(${v}u)`;
  const index = (expert: string, g: string, groups: string, nv: string, numVec: string) =>
      `(${expert} * ${groups} + ${g}) * ${numVec} + ${nv}`;
  const floatScale = (...a: [string, string, string, string, string]) => `scales[${index(...a)}]`;
  switch (l.format) {
    case 'float16':
      return {perWord, snippet: '', groupScale: null, groupZero: null,
              codeRow: (c, j) => `vec4<f32>(${['x', 'y', 'z', 'w'].map(p => `unpack2x16float(${c}.${p}).${'xy'[j]}`)})`};
    case 'bfloat16':
      return {perWord, snippet: '', groupScale: null, groupZero: null,
              codeRow: (c, j) => `bitcast<vec4<f32>>(${j === 0 ? `${c} << ${u(16)}` : `${c} & ${u(0xffff0000)}`})`};
    case 'int8':
      // exponentBits: the byte XOR 0x80 is q + 128 in [0, 255]; 2^23 + q + 128 minus 2^23 + 128 is q.
      return {perWord, snippet: '', groupScale: floatScale, groupZero: null,
              codeRow: bits ? (c, j) => `(bitcast<vec4<f32>>(((${c} >> ${u(8 * j)}) & ${u(0xff)}) ^ ${u(0x4b000080)}) - ` +
                                       'vec4<f32>(8388736.0))' :
                  (c, j) => `vec4<f32>(bitcast<vec4<i32>>(${c} << ${u(24 - 8 * j)}) >> ${u(24)})`};
    case 'int4':
      if (options.int4Unit != null) {
        // Nibble j at bits 4j (and 4j + 16 for the pair) moved to the top of the mantissa: bits 6-9 of a half,
        // bits 19-22 of a float.
        const half = options.int4Unit === 'half';
        const to = half ? 6 : 19, from = (j: number) => 4 * (half ? j % 4 : j);
        const shift = (c: string, j: number) => from(j) <= to ? `(${c} << ${u(to - from(j))})` : `(${c} >> ${u(from(j) - to)})`;
        return {perWord, snippet: '', groupScale: floatScale, unitCodes: true,
                groupZero: l.zeroPoint ? (...a) => `zeros[${index(...a)}]` : () => 'vec4<f32>(8.0)',
                codeRow: half ? (c, j) => {
                  const pair = `(${shift(c, j)} & ${u(0x03c003c0)}) | ${u(0x3c003c00)}`;
                  return `vec4<f32>(${['x', 'y', 'z', 'w'].map(p => `unpack2x16float((${pair}).${p}).${j < 4 ? 'x' : 'y'}`)})`;
                } : (c, j) => `bitcast<vec4<f32>>((${shift(c, j)} & ${u(0x00780000)}) | ${u(0x3f800000)})`};
      }
      if (options.int4Half === true) {
        return {perWord, snippet: '', groupScale: floatScale,
                groupZero: l.zeroPoint ? (...a) => `zeros[${index(...a)}]` : () => 'vec4<f32>(8.0)',
                codeRow: (c, j, z) => {
                  const pair = `((${c} >> ${u(4 * (j % 4))}) & ${u(0x000f000f)}) | ${u(0x64006400)}`;
                  return `(vec4<f32>(${['x', 'y', 'z', 'w'].map(p => `unpack2x16float((${pair}).${p}).${j < 4 ? 'x' : 'y'}`)}) - ` +
                         `(vec4<f32>(1024.0) + ${z}))`;
                }};
      }
      return {perWord, snippet: '', groupScale: floatScale,
              groupZero: l.zeroPoint ? (...a) => `zeros[${index(...a)}]` : () => 'vec4<f32>(8.0)',
              codeRow: bits ? (c, j, z) => `(bitcast<vec4<f32>>(((${c} >> ${u(4 * j)}) & ${u(15)}) | ${u(0x4b000000)}) - ` +
                                          `(vec4<f32>(8388608.0) + ${z}))` :
                  (c, j, z) => `(vec4<f32>((${c} >> ${u(4 * j)}) & ${u(15)}) - ${z})`};
    case 'mxfp4':
      if (options.e2m1Half === true) {
        const shift = (j: number) => 4 * (j % 4) <= 9 ? `<< ${u(9 - 4 * (j % 4))}` : `>> ${u(4 * (j % 4) - 9)}`;
        return {perWord, snippet: MXFP4_SNIPPET + E2M1_HALF_SNIPPET, groupZero: null, codeFactor: 16384,
                groupScale: (...a) => `e8m0Bytes(bitcast<u32>(scales[${index(...a)}]))`,
                codeRow: (c, j) => `vec4<f32>(${['x', 'y', 'z', 'w'].map(p =>
                    `unpack2x16float(e2m1HalfBits(${c} ${shift(j)}).${p}).${j < 4 ? 'x' : 'y'}`)})`};
      }
      return {perWord, snippet: MXFP4_SNIPPET, groupZero: null,
              groupScale: (...a) => `e8m0Bytes(bitcast<u32>(scales[${index(...a)}]))`,
              codeRow: (c, j) => `e2m1x4((${c} >> ${u(4 * j)}) & ${u(15)})`};
    case 'float32':
      throw new Error('wordDecoder: float32 weights are not packed');
  }
}

/** float32 [E,K,N] / [E,N,K] from packed weights, one thread per element. */
export class DequantizeExpertWeightsProgram implements WebGPUProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [DEQUANT_WORKGROUP, 1, 1];
  uniforms = LAYOUT_UNIFORMS;
  size = true;
  private readonly layout: ExpertWeightLayout;

  constructor(l: ExpertWeightLayout) {
    this.layout = l;
    this.variableNames = weightVariableNames(l);
    this.outputShape = l.transposed ? [l.numExperts, l.width, l.depth] : [l.numExperts, l.depth, l.width];
    this.dispatch = flatDispatch(Math.ceil(l.numExperts * l.depth * l.width / DEQUANT_WORKGROUP));
    // The group size is a uniform here: one shader per format and orientation.
    this.shaderKey = `moeDequantize_${layoutKey({...l, groupSize: 0})}`;
  }

  getUserCode(): string {
    const t = this.layout.transposed;
    return `
      ${weightDecoderSnippet(this.layout)}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let inner = ${t ? 'uniforms.depth' : 'uniforms.width'};
          let outer = ${t ? 'uniforms.width' : 'uniforms.depth'};
          let e = index / (inner * outer);
          let a = (index / inner) % outer;
          let b = index % inner;
          result[index] = ${t ? 'weightAt(e, b, a)' : 'weightAt(e, a, b)'};
        }
      }`;
  }
}
