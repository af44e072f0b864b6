/** out[r,i] = silu(x[r,i]) * x[r,I+i] * scale[r] (docs/semantics.md section 5); vec4 over i when I % 4 == 0. */
import {FLAT_LAYOUT, flatDispatch, WebGPUProgram} from './webgpu_util.js';

/** WGSL for silu(gate) * up; shared with the GEMM epilogue that fuses it. */
export const SWIGLU_SNIPPET = `
  fn swiglu1(gate : f32, up : f32) -> f32 { return gate / (1.0 + exp(-gate)) * up; }
  fn swiglu4(gate : vec4<f32>, up : vec4<f32>) -> vec4<f32> { return gate / (vec4<f32>(1.0) + exp(-gate)) * up; }`;

export class FusedSwigluScaleProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms = 'halfVec : i32,';
  size = true;
  private readonly hasScale: boolean;

  constructor(numRows: number, halfWidth: number, hasScale: boolean) {
    const vec = halfWidth % 4 === 0 ? 4 : 1;
    this.hasScale = hasScale;
    this.variableNames = hasScale ? ['x', 'scale'] : ['x'];
    this.variableComponents = hasScale ? [vec, 1] : [vec];
    this.outputComponent = vec;
    this.outputShape = [numRows, halfWidth];
    this.dispatch = flatDispatch(Math.ceil(numRows * halfWidth / vec / 256));
    this.shaderKey = `moeSwigluScale_v${vec}_s${+hasScale}`;
  }

  getUserCode(): string {
    const fn = this.outputComponent === 4 ? 'swiglu4' : 'swiglu1';
    return `
      ${SWIGLU_SNIPPET}
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
