/**
 * Routing for every method (docs/semantics.md sections 1, 2 and 11.8) as one WGSL template: one workgroup per token row,
 * each thread holding a strided slice of the row's experts in registers, top-k by k rounds of a workgroup arg-max.
 * A program writes one output, so each of the op's outputs is one run of the program with `emit` naming it;
 * routing is a small fraction of a MoE layer, cheaper to repeat than to stage through a packed buffer.
 */
import {FLAT_LAYOUT, flatDispatch, RANKING_SNIPPET, WebGPUProgram, WORKGROUP_INDEX_SNIPPET} from './webgpu_util.js';

import type {TopkMethod} from '../kernel_names.js';

/**
 * 'greedy': softmax top-k (moeTopkSelect, with groups when nGroup > 1); 'noaux_tc': grouped sigmoid top-k
 * (getMoeScores); 'sparsemixer': PhiMoE's two masked-softmax rounds (moeTopkSelect).
 */
export type RoutingMethod = Exclude<TopkMethod, 'group_limited_greedy'>;
export type RoutingEmit = 'ids' | 'weights' | 'scores';

export interface RoutingParams {
  method: RoutingMethod;
  emit: RoutingEmit;
  numTokens: number;
  numExperts: number;
  topK: number;
  hasBias: boolean;
  /** Divide the weights by their sum (noaux_tc: with getMoeScores' epsilon). */
  renormalize: boolean;
  /** noaux_tc; greedy too when > 1 (group_limited_greedy: groups scored by their best p, dropped experts 0). */
  nGroup?: number;
  topkGroup?: number;
}

const WG = 64;

export class RoutingProgram implements WebGPUProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  uniforms = 'routedScalingFactor : f32, renormalizeEpsilon : f32,';
  private readonly p: RoutingParams;

  constructor(p: RoutingParams) {
    this.p = p;
    this.variableNames = p.hasBias ? ['logits', 'bias'] : ['logits'];
    this.outputShape = p.emit === 'scores' ? [p.numTokens, p.numExperts] : [p.numTokens, p.topK];
    this.dispatch = flatDispatch(p.numTokens);
    if (p.method === 'sparsemixer') this.uniforms += ' sparsemixerEpsilon : f32,';
    // Every constant baked into the WGSL below is in the key (the pipeline cache ignores shape values).
    this.shaderKey = `moeRouting_${p.method}_${p.emit}_E${p.numExperts}_k${p.topK}_b${+p.hasBias}_n${+p.renormalize}` +
        `_G${p.nGroup ?? 0}_Gk${p.topkGroup ?? 0}`;
  }

  getUserCode(): string {
    const {method, emit, numExperts: E, topK: K, hasBias, renormalize} = this.p;
    const VPT = Math.ceil(E / WG);
    const G = this.p.nGroup ?? 1;
    const GK = this.p.topkGroup ?? 1;
    const biasOf = (e: string) => hasBias ? `bias[${e}]` : '0.0';
    // Softmax groups (group_limited_greedy) score by their best p and drop to 0; sigmoid groups (noaux_tc) score
    // by their top-2 sum and drop to -Infinity.
    const softmaxGroups = method === 'greedy' && G > 1;
    const grouped = method === 'noaux_tc' || softmaxGroups;

    // Per-thread values: p (softmax prob / sigmoid score) and s (the selection score).
    const valuesSoftmax = `
      var localMax = -uniforms.INFINITY;
      var localNaN = 0.0;
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        var v = -uniforms.INFINITY;
        if (e < E) { v = logits[row * E + e]; }
        raw[i] = v;
        if (isnan(v)) { localNaN = 1.0; } else { localMax = max(localMax, v); }
      }
      let rowMax = wgMax(localMax);
      // A row whose max is infinite is NaN throughout too (max-subtracted softmax in IEEE arithmetic: Inf - Inf);
      // WGSL does not promise IEEE results for infinities, so say it explicitly.
      let rowNaN = wgMax(localNaN) > 0.0 || !isFiniteF32(rowMax);
      var localSum = 0.0;
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        if (e < E) { localSum += exp(raw[i] - rowMax); }
      }
      let rowSum = wgSum(localSum);
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        // A NaN logit makes every probability of the row NaN (the max and the sum are NaN).
        var pe = select(exp(raw[i] - rowMax) / rowSum, uniforms.NAN, rowNaN);
        if (e >= E) { pe = 0.0; }
        prob[i] = pe;
        sel[i] = select(pe, pe + ${biasOf('e')}, e < E);
        ${softmaxGroups ? 'if (e < E) { biased[e] = pe; }' : ''}
      }`;

    const valuesGrouped = `
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        var v = 0.0;
        if (e < E) { v = logits[row * E + e]; }
        // exp() need not propagate NaN on every GPU (SwiftShader's does not): keep NaN logits NaN explicitly.
        let sc = select(1.0 / (1.0 + exp(-v)), uniforms.NAN, isnan(v));
        prob[i] = sc;
        ${emit === 'scores' ? '' : `if (e < E) { biased[e] = sc + ${biasOf('e')}; }`}
      }`;

    // Group scores, then the kept groups (doc 2.3-2.5 and the 2.8 fallback), then candidates.
    const groupSelection = `
      workgroupBarrier();
      for (var g = lid; g < G; g += WG) {
        var v0 = 0.0; var i0 = -1; var v1 = 0.0; var i1 = -1;
        for (var m = 0; m < GSIZE; m++) {
          let e = g * GSIZE + m;
          let v = biased[e];
          if (ranksBefore(v, e, v0, i0)) { v1 = v0; i1 = i0; v0 = v; i0 = e; }
          else if (ranksBefore(v, e, v1, i1)) { v1 = v; i1 = e; }
        }
        groupScore[g] = ${softmaxGroups ? 'v0' : 'select(v0 + v1, v0, GSIZE == 1)'};
      }
      workgroupBarrier();
      if (lid == 0) {
        var anyFinite = false;
        for (var g = 0; g < G; g++) {
          groupKept[g] = 0;
          if (isFiniteF32(groupScore[g])) { anyFinite = true; }
        }
        for (var j = 0; j < GK; j++) {
          var bv = 0.0; var bi = -1;
          for (var g = 0; g < G; g++) {
            if (groupKept[g] == 0 && ranksBefore(groupScore[g], g, bv, bi)) { bv = groupScore[g]; bi = g; }
          }
          groupKept[bi] = 1;
        }
        fallback = select(1, 0, anyFinite);
      }
      workgroupBarrier();
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        var s = 0.0;
        if (e < E) { s = ${softmaxGroups ? 'select(0.0, biased[e], groupKept[e / GSIZE] != 0)' : 'biased[e]'}; }
        sel[i] = s;
        ${softmaxGroups ? `// Softmax groups: dropped experts score 0 and still compete (section 11.4).
        prob[i] = s;` : `// Experts of dropped groups never compete, not even against a NaN of a kept group (semantics 2.5).
        dropped[i] = e < E && groupKept[e / GSIZE] == 0;`}
      }`;

    const selection = `
      for (var i = 0; i < VPT; i++) { taken[i] = ${method === 'noaux_tc' ? 'dropped[i]' : 'false'}; }
      for (var j = 0; j < K; j++) {
        var bv = 0.0; var bi = -1;
        for (var i = 0; i < VPT; i++) {
          let e = lid + i * WG;
          if (e < E && !taken[i] && ranksBefore(sel[i], e, bv, bi)) { bv = sel[i]; bi = e; }
        }
        let win = wgBest(bv, bi).index;
        for (var i = 0; i < VPT; i++) {
          if (lid + i * WG == win) { taken[i] = true; chosenId[j] = win; chosenP[j] = prob[i]; }
        }
      }
      workgroupBarrier();`;

    const writeSoftmax = emit === 'ids' ? `result[row * K + j] = chosenId[j];` : `
          var total = 0.0;
          for (var m = 0; m < K; m++) { total += chosenP[m]; }
          // WGSL's max() need not propagate NaN: a NaN sum (a sparsemixer round with an infinite max) stays NaN.
          let denom = total + uniforms.renormalizeEpsilon;
          let w = ${renormalize ? 'chosenP[j] / select(max(denom, 1e-12), denom, isnan(denom))' : 'chosenP[j]'};
          result[row * K + j] = w * uniforms.routedScalingFactor;`;
    const writeGrouped = emit === 'ids' ? `result[row * K + j] = select(chosenId[j], j, fallback != 0);` : `
          var total = 0.0;
          for (var m = 0; m < K; m++) { total += chosenP[m]; }
          let w = ${renormalize ? 'chosenP[j] / (total + uniforms.renormalizeEpsilon)' : 'chosenP[j]'} *
              uniforms.routedScalingFactor;
          result[row * K + j] = select(w, 1.0 / f32(K), fallback != 0);`;

    // PhiMoE's two rounds (docs/semantics.md 11.8): the best expert not chosen yet, then its softmax over the
    // unmasked rest. The ratio is read only where its denominator is > 0 (0 / 0 does not mask, and WGSL does not
    // promise NaN there); NaN rows and infinite maxima are said explicitly, as in the softmax values above.
    const sparsemixer = `
      var localNaN = 0.0;
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        var v = 0.0;
        if (e < E) { v = logits[row * E + e]; }
        raw[i] = v;
        taken[i] = false;
        if (isnan(v)) { localNaN = 1.0; }
      }
      let rowNaN = wgMax(localNaN) > 0.0;
      let threshold = 2.0 * uniforms.sparsemixerEpsilon;
      for (var r = 0; r < 2; r++) {
        var bv = 0.0; var bi = -1;
        for (var i = 0; i < VPT; i++) {
          let e = lid + i * WG;
          if (e < E && !taken[i] && ranksBefore(raw[i], e, bv, bi)) { bv = raw[i]; bi = e; }
        }
        let best = wgBest(bv, bi);
        let m = best.value;
        var localSum = 0.0;
        for (var i = 0; i < VPT; i++) {
          let e = lid + i * WG;
          let l = raw[i];
          let scale = max(abs(l), m);
          let masked = scale > 0.0 && (m - l) / scale > threshold;
          if (e < E && !taken[i] && !masked) { localSum += exp(l - m); }
        }
        let total = wgSum(localSum);
        for (var i = 0; i < VPT; i++) {
          if (lid + i * WG == best.index) { taken[i] = true; }
        }
        if (lid == 0) {
          chosenId[r] = best.index;
          chosenP[r] = select(1.0 / total, uniforms.NAN, rowNaN || !isFiniteF32(m));
        }
      }
      workgroupBarrier();`;

    const body = method === 'sparsemixer' ? `
      ${sparsemixer}
      if (valid) {
        for (var j = lid; j < K; j += WG) {
          ${writeSoftmax}
        }
      }` : emit === 'scores' ? `
      ${valuesGrouped}
      for (var i = 0; i < VPT; i++) {
        let e = lid + i * WG;
        if (e < E && valid) { result[row * E + e] = prob[i]; }
      }` : `
      ${method === 'greedy' ? valuesSoftmax + (softmaxGroups ? groupSelection : '') : valuesGrouped + groupSelection}
      ${selection}
      if (valid) {
        for (var j = lid; j < K; j += WG) {
          ${method === 'greedy' ? writeSoftmax : writeGrouped}
        }
      }`;

    return `
      const WG = ${WG};
      const VPT = ${VPT};
      const E = ${E};
      const K = ${K};
      const G = ${G};
      const GK = ${GK};
      const GSIZE = ${Math.floor(E / G)};
      var<workgroup> redV : array<f32, WG>;
      var<workgroup> redI : array<i32, WG>;
      var<workgroup> chosenId : array<i32, K>;
      var<workgroup> chosenP : array<f32, K>;
      var<workgroup> rowShared : i32;
      ${grouped && emit !== 'scores' ? `
      var<workgroup> biased : array<f32, E>;
      var<workgroup> groupScore : array<f32, G>;
      var<workgroup> groupKept : array<i32, G>;
      var<workgroup> fallback : i32;` : ''}
      ${WORKGROUP_INDEX_SNIPPET}
      ${RANKING_SNIPPET}

      fn wgMax(v : f32) -> f32 {
        let lid = i32(localId.x);
        redV[lid] = v;
        workgroupBarrier();
        for (var st = WG / 2; st > 0; st = st / 2) {
          if (lid < st) { redV[lid] = max(redV[lid], redV[lid + st]); }
          workgroupBarrier();
        }
        let r = redV[0];
        workgroupBarrier();
        return r;
      }
      struct Best { value : f32, index : i32 }
      // The workgroup's best (value, expert) by ranksBefore: ties to the lower expert, NaN never wins.
      fn wgBest(v : f32, i : i32) -> Best {
        let lid = i32(localId.x);
        redV[lid] = v; redI[lid] = i;
        workgroupBarrier();
        for (var st = WG / 2; st > 0; st = st / 2) {
          if (lid < st && ranksBefore(redV[lid + st], redI[lid + st], redV[lid], redI[lid])) {
            redV[lid] = redV[lid + st]; redI[lid] = redI[lid + st];
          }
          workgroupBarrier();
        }
        let best = Best(redV[0], redI[0]);
        workgroupBarrier();
        return best;
      }
      fn wgSum(v : f32) -> f32 {
        let lid = i32(localId.x);
        redV[lid] = v;
        workgroupBarrier();
        for (var st = WG / 2; st > 0; st = st / 2) {
          if (lid < st) { redV[lid] = redV[lid] + redV[lid + st]; }
          workgroupBarrier();
        }
        let r = redV[0];
        workgroupBarrier();
        return r;
      }

      fn main(index : i32) {
        let lid = i32(localId.x);
        if (lid == 0) { rowShared = flatWorkgroupIndex(); }
        let wgRow = workgroupUniformLoad(&rowShared);
        let valid = wgRow < uniforms.outShape[0];
        // Workgroups past the last row (a reshaped dispatch) compute on row 0 and write nothing.
        let row = select(0, wgRow, valid);
        var raw : array<f32, VPT>;
        var prob : array<f32, VPT>;
        var sel : array<f32, VPT>;
        var taken : array<bool, VPT>;
        var dropped : array<bool, VPT>;
        ${body}
      }`;
  }
}
