/**
 * WGSL over packed expert weights (docs/formats.md): one decoder snippet, generated per format, that reads a
 * weight straight from its int32 word (and its group's scale) inside the load, and two programs built on it:
 * the dequantization itself and a grouped GEMM. The GEMM is the plain one-thread-per-output form (correct, not
 * yet fast: the tiled and streaming schedules of batched_gemm_webgpu.ts take this decoder in their loads later).
 * Decoding is integer and bit arithmetic only, so it matches the host definition exactly (GPUs may flush the
 * subnormal results of float16 subnormals or tiny mxfp4 scales to zero: see docs/formats.md).
 */
import {bitsPerCode, codesPerWord, ExpertWeightLayout} from '../expert_weight_formats.js';
import {SWIGLU_SNIPPET} from './fused_swiglu_scale_webgpu.js';
import {FLAT_LAYOUT, flatDispatch, ProgramUniform, WebGPUProgram} from './webgpu_util.js';

export const DEQUANT_WORKGROUP = 64;

/** The layout's shape as uniforms (the WGSL bakes only format, orientation and zero-point mode). */
export const LAYOUT_UNIFORMS = 'numExperts : i32, depth : i32, width : i32, groupSize : i32,';
export function layoutUniforms(l: ExpertWeightLayout): ProgramUniform[] {
  return [l.numExperts, l.depth, l.width, Math.max(1, l.groupSize)].map(v => ({type: 'int32', data: [v]}));
}

/** The variable names the decoder reads, in input order. */
export function weightVariableNames(l: ExpertWeightLayout): string[] {
  const names = ['packed'];
  if (l.format === 'int8' || l.format === 'int4' || l.format === 'mxfp4') names.push('scales');
  if (l.zeroPoint) names.push('zeros');
  return names;
}

export function layoutKey(l: ExpertWeightLayout): string {
  return `${l.format}_t${+l.transposed}_z${+l.zeroPoint}`;
}

/** WGSL `fn weightAt(e, k, n) -> f32`: element (k, n) of expert e's [K,N] weights. */
export function weightDecoderSnippet(l: ExpertWeightLayout): string {
  const t = l.transposed;
  if (l.format === 'float32') {
    const index = t ? '(e * uniforms.width + n) * uniforms.depth + k' : '(e * uniforms.depth + k) * uniforms.width + n';
    return `
      fn weightAt(e : i32, k : i32, n : i32) -> f32 { return packed[${index}]; }`;
  }
  const per = codesPerWord(l.format), bits = bitsPerCode(l.format);
  const code = `
      const CODES_PER_WORD = ${per};
      fn codeAt(e : i32, k : i32, n : i32) -> u32 {
        let wordsPerColumn = (uniforms.depth + CODES_PER_WORD - 1) / CODES_PER_WORD;
        let word = ${t ? '(e * uniforms.width + n) * wordsPerColumn + k / CODES_PER_WORD' :
                        '(e * wordsPerColumn + k / CODES_PER_WORD) * uniforms.width + n'};
        return (bitcast<u32>(packed[word]) >> (u32(k % CODES_PER_WORD) * ${bits}u)) & ${(2 ** bits - 1) >>> 0}u;
      }
      fn groupIndex(e : i32, k : i32, n : i32) -> i32 {
        let groups = (uniforms.depth + uniforms.groupSize - 1) / uniforms.groupSize;
        let g = k / uniforms.groupSize;
        return ${t ? '(e * uniforms.width + n) * groups + g' : '(e * groups + g) * uniforms.width + n'};
      }`;
  switch (l.format) {
    case 'float16':
      return `${code}
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
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
      return `${code}
      fn e2m1(c : u32) -> f32 {
        let exponent = (c >> 1u) & 3u;
        let fraction = f32(c & 1u) * 0.5;
        let magnitude = select((1.0 + fraction) * f32(1u << (exponent - 1u)), fraction, exponent == 0u);
        return select(magnitude, -magnitude, (c & 8u) != 0u);
      }
      fn e8m0(b : u32) -> f32 {
        // 2^(b - 127) as float32 bits: b = 0 is the subnormal 2^-127, b = 255 the quiet NaN (built at run time:
        // WGSL rejects NaN constants).
        return bitcast<f32>(select(b << 23u, 0x00400000u, b == 0u) | select(0u, 0x00400000u, b == 255u));
      }
      fn weightAt(e : i32, k : i32, n : i32) -> f32 {
        let groups = (uniforms.depth + uniforms.groupSize - 1) / uniforms.groupSize;
        let g = k / uniforms.groupSize;
        ${t ? `let word = (e * uniforms.width + n) * ((groups + 3) / 4) + g / 4;
        let shift = u32(g % 4) * 8u;` : `let word = (e * groups + g) * ((uniforms.width + 3) / 4) + n / 4;
        let shift = u32(n % 4) * 8u;`}
        return e2m1(codeAt(e, k, n)) * e8m0((bitcast<u32>(scales[word]) >> shift) & 0xffu);
      }`;
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
    this.shaderKey = `moeDequantize_${layoutKey(l)}`;
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

/**
 * out[r, n] = sum_k lhs[r, k] * w(e, k, n) (+ bias[e, n]) for r in expert e's segment, else 0; f32 accumulation
 * in k order. Inputs: lhs, the weight variables, offsets [E+1], bias and the row scale when present.
 * With `swiglu` (N = 2I) the output is [R, I]: silu(h[r, c]) * h[r, I + c] (* scale[r]), h the product above,
 * the thread accumulating both columns of its pair.
 */
export class BatchedGemmQuantizedProgram implements WebGPUProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [DEQUANT_WORKGROUP, 1, 1];
  uniforms = LAYOUT_UNIFORMS;
  size = true;
  private readonly layout: ExpertWeightLayout;
  private readonly hasBias: boolean;
  private readonly swiglu: boolean;
  private readonly hasScale: boolean;

  constructor(l: ExpertWeightLayout, numRows: number, hasBias: boolean, swiglu = false, hasScale = false) {
    this.layout = l;
    this.hasBias = hasBias;
    this.swiglu = swiglu;
    this.hasScale = swiglu && hasScale;
    this.variableNames = ['lhs', ...weightVariableNames(l), 'offsets', ...(hasBias ? ['bias'] : []),
                          ...(this.hasScale ? ['rowScale'] : [])];
    const outWidth = swiglu ? l.width / 2 : l.width;
    this.outputShape = [numRows, outWidth];
    this.dispatch = flatDispatch(Math.ceil(numRows * outWidth / DEQUANT_WORKGROUP));
    this.shaderKey = `moeGemmQuantized_${layoutKey(l)}_b${+hasBias}_g${+swiglu}_s${+this.hasScale}`;
  }

  getUserCode(): string {
    const columns = this.swiglu ? ['n', 'n + halfWidth'] : ['n'];
    const sums = columns.map((col, i) => `
            for (var k = 0; k < uniforms.depth; k++) {
              acc${i} += lhs[r * uniforms.depth + k] * weightAt(e, k, ${col});
            }
            ${this.hasBias ? `acc${i} += bias[e * uniforms.width + ${col}];` : ''}`).join('');
    const result = !this.swiglu ? 'acc0' :
        `swiglu1(acc0, acc1)${this.hasScale ? ' * rowScale[r]' : ''}`;
    return `
      ${weightDecoderSnippet(this.layout)}
      ${this.swiglu ? SWIGLU_SNIPPET : ''}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let halfWidth = uniforms.width / 2;
          let outWidth = ${this.swiglu ? 'halfWidth' : 'uniforms.width'};
          let r = index / outWidth;
          let n = index % outWidth;
          var e = -1;
          for (var i = 0; i < uniforms.numExperts; i++) {
            if (r >= offsets[i] && r < offsets[i + 1]) { e = i; }
          }
          var acc0 = 0.0;
          var acc1 = 0.0;
          if (e >= 0) {${sums}
          }
          result[index] = ${result};
        }
      }`;
  }
}
