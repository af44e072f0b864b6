/**
 * out[t] = sum_j (weightsApplied ? y[rowMap[t,j]] : w[t,j] y[rowMap[t,j]]) + w[t,j] bias[id[t,j]] (docs/semantics.md
 * section 6), one thread per (token, vec4 of D). Rows or ids out of range contribute nothing (never read past y).
 * With the identity input (zeroExperts, section 11.5) a slot with no row (-1) adds w * x[token] and no bias.
 */
import {FLAT_LAYOUT, flatDispatch, WebGPUProgram} from './webgpu_util.js';

export class MoeCombineProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms = 'widthVec : i32, numRows : i32, numExperts : i32,';
  size = true;
  private readonly topK: number;
  private readonly hasBias: boolean;
  private readonly weightsApplied: boolean;
  private readonly hasIdentity: boolean;

  constructor(numTokens: number, width: number, topK: number, hasBias: boolean, weightsApplied: boolean,
              hasIdentity = false) {
    const vec = width % 4 === 0 ? 4 : 1;
    this.topK = topK;
    this.hasBias = hasBias;
    this.weightsApplied = weightsApplied;
    this.hasIdentity = hasIdentity;
    // ids are only read for the bias; an unbound-but-declared input would break the auto layout.
    this.variableNames = hasBias ? ['y', 'rowMap', 'weights', 'ids', 'bias'] : ['y', 'rowMap', 'weights'];
    this.variableComponents = hasBias ? [vec, 1, 1, 1, vec] : [vec, 1, 1];
    if (hasIdentity) {
      this.variableNames.push('identity');
      this.variableComponents.push(vec);
    }
    this.outputComponent = vec;
    this.outputShape = [numTokens, width];
    this.dispatch = flatDispatch(Math.ceil(numTokens * width / vec / 256));
    this.shaderKey = `moeCombine_v${vec}_k${topK}_b${+hasBias}_a${+weightsApplied}_i${+hasIdentity}`;
  }

  getUserCode(): string {
    const zero = this.outputComponent === 4 ? 'vec4<f32>(0.0)' : '0.0';
    // With the identity input, a slot with no row is an identity expert's: it has no bias term.
    const biasTerm = this.hasBias ? `
            let e = ids[slot];
            if (e >= 0 && e < uniforms.numExperts${this.hasIdentity ? ' && row >= 0' : ''}) {
              acc += w * bias[e * uniforms.widthVec + col];
            }` : '';
    const identityTerm = this.hasIdentity ? ` else if (row == -1) {
              acc += w * identity[index];
            }` : '';
    return `
      const K = ${this.topK};
      fn main(index : i32) {
        if (index < uniforms.size) {
          let token = index / uniforms.widthVec;
          let col = index - token * uniforms.widthVec;
          var acc = ${zero};
          for (var j = 0; j < K; j++) {
            let slot = token * K + j;
            let row = rowMap[slot];
            let w = weights[slot];
            if (row >= 0 && row < uniforms.numRows) {
              let v = y[row * uniforms.widthVec + col];
              acc += ${this.weightsApplied ? 'v' : 'w * v'};
            }${identityTerm}${biasTerm}
          }
          result[index] = acc;
        }
      }`;
  }
}
