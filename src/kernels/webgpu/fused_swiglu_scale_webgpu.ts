/** out[r,i] = act(x[r,i], x[r,I+i]) * scale[r] (docs/semantics.md section 5); vec4 over i when I % 4 == 0. */
import type {SwigluActivation, SwigluActivationAttrs} from '../kernel_names.js';
import {FLAT_LAYOUT, flatDispatch, ProgramUniform, WebGPUProgram} from './webgpu_util.js';

/**
 * WGSL swiglu1 / swiglu4 (scalar, vec4) for the activation, shared by every program that applies it (this one and
 * the GEMM epilogues). The clamped variant reads its two constants from uniforms (SWIGLU_UNIFORMS), so one shader
 * serves every alpha and limit.
 */
export function swigluSnippet(activation: SwigluActivation): string {
  if (activation === 'swiglu') {
    return `
  fn swiglu1(gate : f32, up : f32) -> f32 { return gate / (1.0 + exp(-gate)) * up; }
  fn swiglu4(gate : vec4<f32>, up : vec4<f32>) -> vec4<f32> { return gate / (vec4<f32>(1.0) + exp(-gate)) * up; }`;
  }
  const body = (t: string) => `
    let g = min(gate, ${t}(uniforms.swigluLimit));
    let u = clamp(up, ${t}(-uniforms.swigluLimit), ${t}(uniforms.swigluLimit));
    return (u + ${t}(1.0)) * g / (${t}(1.0) + exp(-uniforms.swigluAlpha * g));`;
  return `
  fn swiglu1(gate : f32, up : f32) -> f32 {${body('f32')}
  }
  fn swiglu4(gate : vec4<f32>, up : vec4<f32>) -> vec4<f32> {${body('vec4<f32>')}
  }`;
}

/** The uniform declarations the clamped snippet reads ('' for plain SwiGLU), and their values in that order. */
export function swigluUniforms(activation: SwigluActivation): string {
  return activation === 'swiglu' ? '' : 'swigluAlpha : f32, swigluLimit : f32,';
}
export function swigluUniformData(act: SwigluActivationAttrs): ProgramUniform[] {
  return act.activation === 'swiglu' ? [] :
      [{type: 'float32', data: [act.swigluAlpha]}, {type: 'float32', data: [act.swigluLimit]}];
}

export class FusedSwigluScaleProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms: string;
  size = true;
  private readonly hasScale: boolean;
  private readonly activation: SwigluActivation;

  constructor(numRows: number, halfWidth: number, hasScale: boolean, activation: SwigluActivation = 'swiglu') {
    this.activation = activation;
    this.uniforms = 'halfVec : i32,' + swigluUniforms(activation);
    const vec = halfWidth % 4 === 0 ? 4 : 1;
    this.hasScale = hasScale;
    this.variableNames = hasScale ? ['x', 'scale'] : ['x'];
    this.variableComponents = hasScale ? [vec, 1] : [vec];
    this.outputComponent = vec;
    this.outputShape = [numRows, halfWidth];
    this.dispatch = flatDispatch(Math.ceil(numRows * halfWidth / vec / 256));
    this.shaderKey = `moeSwigluScale_v${vec}_s${+hasScale}_${activation}`;
  }

  getUserCode(): string {
    const fn = this.outputComponent === 4 ? 'swiglu4' : 'swiglu1';
    return `
      ${swigluSnippet(this.activation)}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let row = index / uniforms.halfVec;
          let col = index - row * uniforms.halfVec;
          let gate = x[row * 2 * uniforms.halfVec + col];
          let up = x[row * 2 * uniforms.halfVec + uniforms.halfVec + col];
          result[index] = ${fn}(gate, up)${this.hasScale ? ' * scale[row]' : ''};
        }
      }`;
  }
}
