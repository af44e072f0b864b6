/**
 * Dispatch on the GPU (docs/semantics.md section 3) as a stable counting sort in four programs, none of which needs a
 * readback: a histogram of the ids, a scan of the (aligned) counts into segment offsets, a per-expert ordered scan
 * of the ids that places each (token, slot) in its expert's segment, and a row gather of x.
 * Ids outside [0,E) are counted nowhere and placed nowhere, so nothing is written out of bounds for them.
 */
import {FLAT_LAYOUT, flatDispatch, WebGPUProgram, WORKGROUP_INDEX_SNIPPET, workgroupScanSnippet} from './webgpu_util.js';

const SCAN_WG = 256;

/** Workgroup-wide exclusive scan of one i32 per thread; returns vec2(exclusive prefix, total). */
const SCAN_SNIPPET = workgroupScanSnippet('wgExclusiveScan', 'a + b', SCAN_WG);

/** tokensPerExpert [E]: one workgroup, a shared-memory histogram. */
export class ExpertCountProgram implements WebGPUProgram {
  variableNames = ['ids'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number] = [1, 1, 1];
  workgroupSize: [number, number, number] = [SCAN_WG, 1, 1];
  private readonly numExperts: number;

  constructor(numExperts: number) {
    this.numExperts = numExperts;
    this.outputShape = [numExperts];
    this.shaderKey = `moeExpertCount_E${numExperts}`;
  }

  getUserCode(): string {
    return `
      const E = ${this.numExperts};
      var<workgroup> hist : array<atomic<i32>, E>;
      fn main(index : i32) {
        let lid = i32(localId.x);
        let n = uniforms.idsShape;
        for (var i = lid; i < n; i += ${SCAN_WG}) {
          let e = ids[i];
          if (e >= 0 && e < E) { atomicAdd(&hist[e], 1); }
        }
        workgroupBarrier();
        for (var e = lid; e < E; e += ${SCAN_WG}) { result[e] = atomicLoad(&hist[e]); }
      }`;
  }
}

/**
 * expertOffsets [E+1] from counts [E], each count rounded up to `alignment`. One workgroup; thread i scans a
 * contiguous chunk of experts. (A GEMM's segments go through SegmentBoundsProgram instead.)
 */
export class SegmentOffsetsProgram implements WebGPUProgram {
  variableNames = ['counts'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number] = [1, 1, 1];
  workgroupSize: [number, number, number] = [SCAN_WG, 1, 1];
  uniforms = 'alignment : i32,';
  private readonly numExperts: number;

  constructor(numExperts: number) {
    this.numExperts = numExperts;
    this.outputShape = [numExperts + 1];
    this.shaderKey = `moeSegmentOffsets_E${numExperts}`;
  }

  getUserCode(): string {
    const chunk = Math.ceil(this.numExperts / SCAN_WG);
    return `
      const E = ${this.numExperts};
      const CHUNK = ${chunk};
      ${SCAN_SNIPPET}
      fn aligned(c : i32) -> i32 {
        let a = uniforms.alignment;
        return ((max(c, 0) + a - 1) / a) * a;
      }
      fn main(index : i32) {
        let lid = i32(localId.x);
        let first = lid * CHUNK;
        var local = 0;
        for (var i = 0; i < CHUNK; i++) {
          let e = first + i;
          if (e < E) { local += aligned(counts[e]); }
        }
        let scan = wgExclusiveScan(local);
        var offset = scan.x;
        for (var i = 0; i < CHUNK; i++) {
          let e = first + i;
          if (e < E) { result[e] = offset; offset += aligned(counts[e]); }
        }
        if (lid == 0) { result[E] = scan.y; }
      }`;
  }
}

export type ExpertRowsEmit = 'rowMap' | 'rowSource';

/**
 * One workgroup per expert walks the ids in (token, slot) order and numbers the ones equal to its expert: the
 * ordered scan that makes the sort stable. emit 'rowMap' writes rowMap [T*k]; emit 'rowSource' writes, for every
 * permuted row, the flat (token*k + slot) index it holds or -1 for padding and unused rows.
 */
export class ExpertRowsProgram implements WebGPUProgram {
  variableNames = ['ids', 'offsets'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [SCAN_WG, 1, 1];
  private readonly emit: ExpertRowsEmit;
  private readonly numExperts: number;
  static readonly PER_THREAD = 8;

  /** outputShape: [T,k] for 'rowMap', [R] for 'rowSource'. */
  constructor(emit: ExpertRowsEmit, numExperts: number, outputShape: number[]) {
    this.emit = emit;
    this.numExperts = numExperts;
    this.outputShape = outputShape;
    this.dispatch = flatDispatch(numExperts);
    this.shaderKey = `moeExpertRows_${emit}_E${numExperts}`;
  }

  getUserCode(): string {
    const V = ExpertRowsProgram.PER_THREAD;
    const place = this.emit === 'rowMap' ?
        `result[f] = r;` :
        `if (r < numRows) { result[r] = f; }`;
    const tailRows = this.emit === 'rowMap' ? '' : `
        // Padding rows of this expert, then (shared by all workgroups) the rows past the last segment.
        let segEnd = min(offsets[e + 1], numRows);
        for (var r = base + lid; r < segEnd; r += ${SCAN_WG}) { result[r] = -1; }
        for (var r = max(offsets[E], 0) + e * ${SCAN_WG} + lid; r < numRows; r += E * ${SCAN_WG}) { result[r] = -1; }`;
    return `
      const E = ${this.numExperts};
      const V = ${V};
      var<workgroup> expertShared : i32;
      ${SCAN_SNIPPET}
      ${WORKGROUP_INDEX_SNIPPET}
      fn main(index : i32) {
        let lid = i32(localId.x);
        if (lid == 0) { expertShared = flatWorkgroupIndex(); }
        let e = workgroupUniformLoad(&expertShared);
        let n = uniforms.idsShape;
        ${this.emit === 'rowSource' ? 'let numRows = uniforms.outShape;' : ''}
        var base = offsets[e];
        for (var c0 = 0; c0 < n; c0 += ${SCAN_WG} * V) {
          let first = c0 + lid * V;
          var matches = 0;
          for (var v = 0; v < V; v++) {
            let f = first + v;
            if (f < n && ids[f] == e) { matches++; }
          }
          let scan = wgExclusiveScan(matches);
          var r = base + scan.x;
          for (var v = 0; v < V; v++) {
            let f = first + v;
            if (f < n) {
              let id = ids[f];
              if (id == e) { ${place} r++; }
              ${this.emit === 'rowMap' ? 'else if (e == 0 && (id < 0 || id >= E)) { result[f] = -1; }' : ''}
            }
          }
          base += scan.y;
        }
        ${tailRows}
      }`;
  }
}

/**
 * permutedX [R,D]: row r copies x[rowSource[r] / k] (times weights[rowSource[r]] with `weighted`), or zeros. vec4
 * over D when D % 4 == 0.
 */
export class GatherRowsProgram implements WebGPUProgram {
  variableNames = ['x', 'rowSource'];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms = 'topK : i32, widthVec : i32,';
  size = true;

  private readonly weighted: boolean;

  constructor(numRows: number, width: number, weighted = false) {
    const vec = width % 4 === 0 ? 4 : 1;
    this.weighted = weighted;
    this.outputComponent = vec;
    this.variableComponents = [vec, 1];
    if (weighted) {
      this.variableNames = ['x', 'rowSource', 'weights'];
      this.variableComponents.push(1);
    }
    this.outputShape = [numRows, width];
    this.dispatch = flatDispatch(Math.ceil(numRows * width / vec / 256));
    this.shaderKey = `moeGatherRows_v${vec}_w${+weighted}`;
  }

  getUserCode(): string {
    const zero = this.outputComponent === 4 ? 'vec4<f32>(0.0)' : '0.0';
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let row = index / uniforms.widthVec;
          let col = index - row * uniforms.widthVec;
          let f = rowSource[row];
          var v = ${zero};
          if (f >= 0) { v = x[(f / uniforms.topK) * uniforms.widthVec + col]${this.weighted ? ' * weights[f]' : ''}; }
          result[index] = v;
        }
      }`;
  }
}
