/**
 * Grouped GEMM over expert row segments (docs/semantics.md section 4), two WGSL programs sharing one tile schedule:
 *
 * - The schedule: rows split into parts (rows before the first segment, one part per expert, rows after the last
 *   segment), each part into tiles of TM rows. A workgroup scans the part tile counts in shared memory to find its
 *   tile, so segments stay a device tensor (no readback), empty experts own no tile, and each tile belongs to one
 *   expert, whose weights it streams once per column tile. Parts outside every segment are written as zeros.
 * - 'stream' (decode, few rows per expert): the work is reading each active expert's [K,N] weights once at full
 *   bandwidth. 256 threads = 16 vec4 columns x 16 k-lanes; each thread streams its k-lane's weights in 16-byte
 *   loads, multiplies them by up to TM rows held as vec4 of lhs, and the k-lanes are summed in shared memory.
 * - 'tiled' (prefill, many rows per expert): compute-bound register tiling, TM x TN tiles staged through shared
 *   memory in TK steps, each thread owning RM rows x RN vec4 columns.
 *
 * SwiGLU epilogue (`swiglu`, the first expert GEMM of the MLP): out[r, c] = silu(h[r, c]) * h[r, I + c] * scale[r]
 * with h = lhs @ rhs + bias, N = 2I, so [R, 2I] never reaches memory. A workgroup's column tile is remapped: its
 * first half streams gate columns, its second half the matching up columns (c and I + c), so the partner of every
 * gate column is in the same workgroup (stream: in shared memory after the k-lane reduction) or the same thread
 * (tiled: its RN columns split into gate and up halves, hence RN even).
 */
import {codesPerWord, hasScales} from '../expert_weight_formats.js';
import {GemmConfig, GemmShape, MatrixConfig, maxTiles, StreamConfig, threads, tileCols, TiledConfig, tileRows}
  from './batched_gemm_config.js';
import {HALF_PAIR_SNIPPET, packedStreamStep, scheduleSnippet, stagedTileLoads, STREAM_WORD_ROWS, tiledLhsLoad,
  tiledRhsLoad} from './batched_gemm_snippets.js';
import {swigluSnippet, swigluUniforms} from './fused_swiglu_scale_webgpu.js';
import {HALF_MATRIX_SUBGROUP} from './half_matrices.js';
import {layoutKey, weightDecoderSnippet, weightVariableNames, wordDecoder} from './quantized_webgpu.js';
import {FLAT_LAYOUT, flatDispatch, WebGPUProgram, WORKGROUP_INDEX_SNIPPET} from './webgpu_util.js';

export type {GemmConfig, GemmShape} from './batched_gemm_config.js';
export {chooseGemmConfig, GEMM_PRESETS, setWebGPUGemmPreset} from './batched_gemm_config.js';

export class BatchedGemmProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms: string;
  readonly colTiles: number;
  /** Packed weights decoded a vec4 of words at a time (else one weight at a time, or float weights). */
  private readonly wordLoads: boolean;
  /** MatrixConfig.wholeSteps where K % TK == 0. */
  private readonly wholeSteps: boolean;
  private readonly shape: GemmShape;
  private readonly config: GemmConfig;

  constructor(shape: GemmShape, config: GemmConfig) {
    const swiglu = shape.swiglu === true;
    if (swiglu && (shape.transposeRhs || shape.width % 2 !== 0 ||
                   (config.kind === 'tiled' && config.rn % 2 !== 0) ||
                   shape.width / 2 % (config.kind === 'tiled' ? config.vec : 4) !== 0)) {
      throw new Error(`BatchedGemmProgram: the SwiGLU epilogue needs transposeRhs false, an even RN and N/2 a ` +
          `multiple of the vector width (N ${shape.width}, config ${JSON.stringify(config)})`);
    }
    this.shape = shape;
    this.config = config;
    const activation = swiglu ? shape.activation ?? 'swiglu' : 'swiglu';
    // The clamped activation's constants follow colTiles (grouped_gemm_run.ts passes them in this order).
    this.uniforms = 'colTiles : i32,' + swigluUniforms(activation);
    const vec = config.kind === 'tiled' ? config.vec : 4;
    const lhsVec = config.kind !== 'tiled' || (shape.depth % 4 === 0) ? 4 : 1;
    const rhsVec = shape.transposeRhs ? 1 : vec;
    const hasScale = swiglu && shape.hasScale === true;
    const packed = shape.packed;
    // Packed weights: the word decoders where the layout allows (vec4 words of four columns, whole words per TK
    // step), else the element decoder (transposed or scalar layouts).
    this.wordLoads = packed != null && !shape.transposeRhs && vec === 4 &&
        (config.kind === 'stream' || config.tk % codesPerWord(packed.format) === 0);
    const rhsNames = packed != null ? weightVariableNames(packed) : ['rhs'];
    const rhsComponents = packed == null ? [rhsVec] :
        rhsNames.map(n => this.wordLoads && !(n === 'scales' && packed.format === 'mxfp4') ? 4 : 1);
    this.wholeSteps = config.kind === 'matrix' && config.wholeSteps === true && shape.depth % config.tk === 0;
    this.variableNames = ['lhs', ...rhsNames, 'offsets'];
    this.variableComponents = [lhsVec, ...rhsComponents, 1];
    if (shape.hasBias) {
      this.variableNames.push('bias');
      this.variableComponents.push(vec);
    }
    if (hasScale) {
      this.variableNames.push('scale');
      this.variableComponents.push(1);
    }
    this.outputComponent = vec;
    const outWidth = swiglu ? shape.width / 2 : shape.width;
    this.outputShape = [shape.numRows, outWidth];
    this.workgroupSize = [threads(config), 1, 1];
    // With swiglu a column tile yields half its width of output columns.
    this.colTiles = Math.ceil(outWidth / (swiglu ? tileCols(config) / 2 : tileCols(config)));
    this.dispatch = flatDispatch(this.colTiles * maxTiles(shape.numRows, shape.numExperts, tileRows(config)));
    const cfgKey = config.kind === 'stream' ?
        `stream_tm${config.tm}_nv${config.nv}_ks${config.ks}_u${config.unroll}` : config.kind === 'matrix' ?
        `matrix_${config.tm}x${config.tn}_tk${config.tk}_s${config.sm}x${config.sn}x${config.sk}_pf${+config.prefetch}` +
        `_g${config.subgroups}${config.split ? `s${config.rowGroups ?? 1}` : 'r'}_pad${+(config.pad ?? false)}_hd${+(config.hd ?? false)}` +
        (config.lhsKFast === true ? '_lk' : '') + ((config.depth ?? 1) > 1 ? `_d${config.depth}` : '') + (config.probe != null ? `_${config.probe}` : '') +
        ((config.buffers ?? 1) > 1 ? `_b${config.buffers}` : '') + (config.rowSkip === true ? '_rs' : '') +
        (this.wholeSteps ? '_ws' : '') + (config.reserveBytes ? `_rv${config.reserveBytes}` : '') +
        (config.split && (config.epilogue ?? 'tile') !== 'tile' ? `_ep${config.epilogue}` : '') :
        `tiled_${config.wx}x${config.wy}_rm${config.rm}_rn${config.rn}_tk${config.tk}_v${config.vec}_a${lhsVec}` +
        `_av${config.av ?? 1}_pf${+(config.prefetch ?? false)}`;
    this.shaderKey = `moeBatchedGemm_${cfgKey}_E${shape.numExperts}_t${+shape.transposeRhs}_b${+shape.hasBias}` +
        `_sw${+swiglu}_sc${+hasScale}${activation === 'swiglu' ? '' : `_${activation}`}` +
        (packed != null ? `_p${layoutKey(packed)}_w${this.wordLoads ? STREAM_WORD_ROWS : 0}` : '');
  }

  getUserCode(): string {
    const c = this.config;
    const head = `
      ${WORKGROUP_INDEX_SNIPPET}
      ${scheduleSnippet(this.shape.numExperts, threads(c), tileRows(c))}`;
    return head + (this.shape.swiglu ? swigluSnippet(this.shape.activation ?? 'swiglu') : '') + this.decoderCode() +
        (c.kind === 'stream' ? this.streamCode(c) : c.kind === 'matrix' ? this.matrixCode(c) : this.tiledCode(c));
  }

  /** The packed weights' decoder functions (none for float weights). */
  private decoderCode(): string {
    const packed = this.shape.packed;
    if (packed == null) return '';
    if (this.wordLoads) return wordDecoder(packed).snippet;
    return weightDecoderSnippet(packed, {depth: 'uniforms.lhsShape[1]', groupSize: `${Math.max(1, packed.groupSize)}`,
                                         width: `(${this.shape.swiglu ? '2 * ' : ''}uniforms.outShape[1])`});
  }

  /** The epilogue's factor after SwiGLU: the row's scale, or nothing. */
  private scaleTerm(row: string): string {
    return this.shape.swiglu && this.shape.hasScale ? ` * scale[${row}]` : '';
  }

  /** Prologue shared by both programs: which tile and column tile this workgroup computes. */
  private prologue(): string {
    return `
        let lid = i32(localIndex);
        if (lid == 0) { wgShared = flatWorkgroupIndex(); }
        let wg = workgroupUniformLoad(&wgShared);
        let colTile = wg % uniforms.colTiles;
        let numRows = uniforms.outShape[0];
        let K = uniforms.lhsShape[1];
        let N = ${this.shape.swiglu ? '2 * ' : ''}uniforms.outShape[1];
        findTile(wg / uniforms.colTiles, numRows);
        let info = workgroupUniformLoad(&tileInfo);
        let expert = info[0];
        let rowStart = info[1];
        let rowEnd = info[2];
        let mode = info[3];`;
  }

  /** Stream program: the vec4 column nv this thread streams (with SwiGLU: gate columns, then matching up ones). */
  private streamColumns(): string {
    return this.shape.swiglu ? `
        // Threads cl < NVW/2 stream gate columns, the others the matching up columns (file comment).
        let IV = NV / 2;
        let logical = colTile * (NVW / 2) + cl % (NVW / 2);
        let nv = select(logical, IV + logical, cl >= NVW / 2);
        let colOk = logical < IV;` : `
        let nv = colTile * NVW + cl;
        let colOk = nv < NV;`;
  }

  /** Stream program epilogue for output row rowStart + i, after the k-lane reduction into red. */
  private streamStore(): string {
    if (this.shape.swiglu) {
      const bias = this.shape.hasBias ? 'g += bias[expert * NV + nv]; u += bias[expert * NV + IV + logical];' : '';
      return `
            if (s == 0 && cl < NVW / 2 && colOk) {
              var v = vec4<f32>(0.0);
              if (mode == MODE_EXPERT) {
                var g = red[lid];
                var u = red[lid + NVW / 2];
                ${bias}
                v = swiglu4(g, u)${this.scaleTerm('rowStart + i')};
              }
              result[(rowStart + i) * IV + logical] = v;
            }`;
    }
    const bias = this.shape.hasBias ? 'v += bias[expert * NV + nv];' : '';
    return `
            if (s == 0 && colOk) {
              var v = red[lid];
              if (mode == MODE_EXPERT) { ${bias} } else { v = vec4<f32>(0.0); }
              result[(rowStart + i) * NV + nv] = v;
            }`;
  }

  /** Stream program: each k-lane's weights times up to TM rows, accumulated into acc. */
  private streamMainLoop(): string {
    if (this.shape.packed != null) return packedStreamStep(this.shape.packed);
    return `
        if (mode == MODE_EXPERT) {
          let wBase = expert * K * NV + nv;
          for (var kb = 0; kb < K4; kb += KS * U) {
            for (var u = 0; u < U; u++) {
              let k4 = kb + u * KS + s;
              if (k4 < K4 && colOk) {
                let w = wBase + k4 * 4 * NV;
                let w0 = rhs[w];
                let w1 = rhs[w + NV];
                let w2 = rhs[w + 2 * NV];
                let w3 = rhs[w + 3 * NV];
                for (var i = 0; i < TM; i++) {
                  if (i < rows) {
                    let a = lhs[(rowStart + i) * K4 + k4];
                    acc[i] += a.x * w0 + a.y * w1 + a.z * w2 + a.w * w3;
                  }
                }
              }
            }
          }
        }
`;
  }

  private streamCode(c: StreamConfig): string {
    return `
      const TM = ${c.tm};
      const NVW = ${c.nv};
      const KS = ${c.ks};
      const U = ${c.unroll};
      var<workgroup> red : array<vec4<f32>, ${c.nv * c.ks}>;
      fn main(index : i32) {
        ${this.prologue()}
        let cl = lid % NVW;
        let s = lid / NVW;
        let NV = N / 4;
        let K4 = K / 4;
        ${this.streamColumns()}
        let rows = select(0, rowEnd - rowStart, mode == MODE_EXPERT);
        var acc : array<vec4<f32>, TM>;
${this.streamMainLoop()}
        let outRows = select(0, rowEnd - rowStart, mode != MODE_IDLE);
        for (var i = 0; i < TM; i++) {
          if (i < outRows) {
            red[lid] = acc[i];
            workgroupBarrier();
            for (var st = KS / 2; st > 0; st = st / 2) {
              if (s < st) { red[lid] += red[lid + st * NVW]; }
              workgroupBarrier();
            }
            ${this.streamStore()}
            workgroupBarrier();
          }
        }
      }`;
  }

  private tiledCode(c: TiledConfig): string {
    const vt = c.vec === 4 ? 'vec4<f32>' : 'f32';
    const tm = c.wy * c.rm;
    const tnv = c.wx * c.rn;
    const packed = this.shape.packed;
    // Staged (vec4, prefetchable) loads where lhs and rhs allow them; rhs that is transposed, scalar or packed
    // through the element decoder is loaded one value at a time after them, and never prefetched.
    const lhsStaged = this.shape.depth % 4 === 0;
    const rhsStaged = c.vec === 4 && !this.shape.transposeRhs && (packed == null || this.wordLoads);
    const av = lhsStaged && c.av === 4 && c.rm % 4 === 0 ? 4 : 1;
    const prefetch = lhsStaged && rhsStaged && c.prefetch === true;
    const staged = lhsStaged ? stagedTileLoads({
      tm, tk: c.tk, tnv, wgs: c.wx * c.wy, av, swiglu: this.shape.swiglu === true, packed,
      rhs: !rhsStaged ? 'none' : packed != null ? 'packed' : 'float',
    }) : {regs: '', fetch: '', store: tiledLhsLoad()};
    const loads = rhsStaged ? staged : {...staged, store: staged.store +
        tiledRhsLoad(this.shape.transposeRhs, this.shape.swiglu === true, c.vec, vt, packed != null)};
    const aRead = av === 4 ?
        `for (var i = 0; i < RM / 4; i++) { a[i] = As[kk * (TM / 4) + ty * (RM / 4) + i]; }` :
        `for (var i = 0; i < RM; i++) { a[i] = As[kk * TM + ty * RM + i]; }`;
    const aAt = av === 4 ? 'a[i / 4][i % 4]' : 'a[i]';
    const body = prefetch ? `
          var kf = 0;${loads.fetch}
          for (var k0 = 0; k0 < K; k0 += TK) {${loads.store}
            workgroupBarrier();
            kf = k0 + TK;
            if (kf < K) {${loads.fetch}
            }
            ${this.tiledSteps(aRead, aAt, av)}
            workgroupBarrier();
          }` : `
          for (var k0 = 0; k0 < K; k0 += TK) {
            let kf = k0;${loads.fetch}${loads.store}
            workgroupBarrier();
            ${this.tiledSteps(aRead, aAt, av)}
            workgroupBarrier();
          }`;
    return `
      const WX = ${c.wx};
      const RM = ${c.rm};
      const RN = ${c.rn};
      const TK = ${c.tk};
      const TM = ${tm};
      const TNV = ${tnv};
      const VEC = ${c.vec};
      const WGS = ${c.wx * c.wy};
      var<workgroup> As : array<${av === 4 ? 'vec4<f32>' : 'f32'}, ${c.tk * tm / av}>;
      var<workgroup> Bs : array<${vt}, ${c.tk * tnv}>;
      fn main(index : i32) {
        ${this.prologue()}
        let tx = lid % WX;
        let ty = lid / WX;
        let NV = N / VEC;
        var acc : array<${vt}, ${c.rm * c.rn}>;
        if (mode == MODE_EXPERT) {
          ${loads.regs}${body}
        }
        ${this.shape.swiglu ? this.tiledSwigluEpilogue(c) : this.tiledEpilogue(c)}
      }`;
  }

  /** The FMAs of one TK step from As / Bs: each thread's RM rows x RN vectors of columns. */
  private tiledSteps(aRead: string, aAt: string, av: number): string {
    return `for (var kk = 0; kk < TK; kk++) {
              var a : array<${av === 4 ? 'vec4<f32>' : 'f32'}, RM / ${av}>;
              ${aRead}
              for (var j = 0; j < RN; j++) {
                let b = Bs[kk * TNV + tx + j * WX];
                for (var i = 0; i < RM; i++) { acc[i * RN + j] += ${aAt} * b; }
              }
            }`;
  }

  /**
   * Tiled program on subgroup matrices (half_matrices.ts): the staged loads write f16 tiles As [TM][TK] and Bs
   * [TK][TN] (row-major, as subgroupMatrixLoad reads them); the workgroup is one subgroup, which multiplies the
   * whole tile in sm x sk times sk x sn matrices with f32 accumulation (the matrix builtins need workgroup-uniform
   * offsets: Tint rejects a per-subgroup column offset, H200 batch F); the results go through an f32 tile Cs
   * [TM][TN] to the same epilogues as the tiled program (bias, SwiGLU pairs, rows past the segment, zero rows).
   * A subgroup that is not 32 wide writes NaN.
   */
  private matrixCode(c: MatrixConfig): string {
    const tnv = c.tn / 4;
    const packed = this.shape.packed;
    const pad = c.pad === true ? 8 : 0;
    // split: subgroup g takes rows block g / colGroups and columns block g % colGroups; else the whole tile.
    const rowGroups = c.split ? c.rowGroups ?? 1 : 1;
    const colGroups = c.split ? c.subgroups / rowGroups : 1;
    // serial: the subgroups take turns in one scratch of a subgroup's block (a quarter or an eighth of the memory).
    const serial = c.split && c.epilogue === 'serial';
    const own = c.split && (c.epilogue === 'subgroup' || serial);
    const loads = stagedTileLoads({tm: c.tm, tk: c.tk, tnv, wgs: threads(c), av: 1, half: true,
      wholeSteps: this.wholeSteps,
      halfDecode: c.hd === true, lhsKFast: c.lhsKFast === true, probe: c.probe, swiglu: this.shape.swiglu === true,
      packed,
      rhs: packed != null ? 'packed' : 'float', swigluBlocks: own ? colGroups : 1});
    const cols = c.tn / colGroups, rows = c.tm / rowGroups;
    const rt = rows / c.sm, ct = cols / c.sn;
    // Per-subgroup column and row offsets (split), else 0: every subgroup multiplies the whole tile.
    const sg = c.split ? ' + sgCol' : '';
    const sgA = rowGroups > 1 ? ' + sgRowA' : '', sgC = rowGroups > 1 ? ' + sgRowC' : '';
    const tiles: Array<[number, number]> = [];
    for (let i = 0; i < rt; i++) for (let j = 0; j < ct; j++) tiles.push([i, j]);
    const left = `subgroup_matrix_left<f16, ${c.sk}, ${c.sm}>`, right = `subgroup_matrix_right<f16, ${c.sn}, ${c.sk}>`;
    const res = `subgroup_matrix_result<f32, ${c.sn}, ${c.sm}>`;
    // Double buffers (MatrixConfig.buffers): the multiplies read buffer aCur / bCur (offsets in halves).
    const buffers = c.prefetch && (c.depth ?? 1) === 1 && c.buffers === 2 ? 2 : 1;
    const bufA = buffers === 2 ? ' + u32(aCur)' : '', bufB = buffers === 2 ? ' + u32(bCur)' : '';
    const aLoad = (i: number) =>
      `let a${i} = subgroupMatrixLoad<${left}>(&As, ${i * c.sm}u * u32(SA)${sgA}${bufA} + kk, false, u32(SA));`;
    const bLoads = Array.from({length: ct}, (_, j) =>
      `let b${j} = subgroupMatrixLoad<${right}>(&Bs, kk * u32(SB)${sg}${bufB} + ${j * c.sn}u, false, u32(SB));`).join(`
              `);
    const products = (i: number) => Array.from({length: ct}, (_, j) =>
      `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc${i}_${j});`).join(`
              `);
    // rowSkip: row matrix i > 0 only where the tile has rows there (a uniform condition per subgroup).
    const rowsPast = (i: number) => `u32(rowEnd - rowStart) > ${i * c.sm}u${rowGroups > 1 ? ' + sgRow' : ''}`;
    const steps = c.rowSkip === true ? `for (var kk = 0u; kk < u32(TK); kk += ${c.sk}u) {
              ${bLoads}
              ${Array.from({length: rt}, (_, i) => i === 0 && rowGroups === 1 ? `${aLoad(i)}
              ${products(i)}` : `if (${rowsPast(i)}) {
                ${aLoad(i)}
                ${products(i)}
              }`).join(`
              `)}
            }` : `for (var kk = 0u; kk < u32(TK); kk += ${c.sk}u) {
              ${Array.from({length: rt}, (_, i) => aLoad(i)).join(`
              `)}
              ${bLoads}
              ${tiles.map(([i, j]) => `acc${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc${i}_${j});`).join(`
              `)}
            }`;
    const depth = c.prefetch ? c.depth ?? 1 : 1;
    const body = buffers === 2 ? BatchedGemmProgram.doubleBuffered(loads, steps) :
        depth > 1 ? BatchedGemmProgram.deepPipeline(loads, steps, depth) : c.prefetch ? `
          var kf = 0;${loads.fetch}
          for (var k0 = 0; k0 < K; k0 += TK) {${loads.store}
            workgroupBarrier();
            kf = k0 + TK;
            if (kf < K) {${loads.fetch}
            }
            ${steps}
            workgroupBarrier();
          }` : `
          for (var k0 = 0; k0 < K; k0 += TK) {
            let kf = k0;${loads.fetch}${loads.store}
            workgroupBarrier();
            ${steps}
            workgroupBarrier();
          }`;
    const head = `
      enable f16;
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;${c.split ? `
      diagnostic(off, chromium.subgroup_matrix_uniformity);
      diagnostic(off, subgroup_uniformity);` : ''}
      const TM = ${c.tm};
      const TN = ${c.tn};
      const TK = ${c.tk};
      const TNV = ${tnv};
      const VEC = 4;
      const WGS = ${threads(c)};
      const SA = ${c.tk + pad};
      const SB = ${c.tn + pad};
      const CW = ${cols};
      const A_BUF = ${c.tm * (c.tk + pad)};
      const B_BUF = ${c.tk * (c.tn + pad)};
      var<workgroup> As : array<f16, ${buffers} * A_BUF>;
      var<workgroup> Bs : array<f16, ${buffers} * B_BUF>;${HALF_PAIR_SNIPPET}
      var<workgroup> Cs : array<f32, ${serial ? c.sm * cols : own ? c.subgroups * c.sm * cols : c.tm * c.tn}>;${c.reserveBytes ? `
      var<workgroup> reserved : array<u32, ${Math.ceil(c.reserveBytes / 4)}>;` : ''}
      fn main(index : i32) {${c.reserveBytes ? `
        if (uniforms.colTiles < 0) { reserved[0] = 0u; }` : ''}
        ${this.prologue()}
        let NV = N / VEC;${c.split ? `
        let sgCol = (u32(lid / ${HALF_MATRIX_SUBGROUP}) % ${colGroups}u) * ${cols}u;` : ''}${rowGroups > 1 ? `
        let sgRow = (u32(lid / ${HALF_MATRIX_SUBGROUP}) / ${colGroups}u) * ${rows}u;
        let sgRowA = sgRow * u32(SA);
        let sgRowC = sgRow * u32(TN);` : ''}`;
    // The layout assumes 32-wide subgroups; any other width shows as NaN outputs (built at run time: WGSL rejects
    // NaN constants).
    const wide = `
        let wide = subgroupAdd(1u) == ${HALF_MATRIX_SUBGROUP}u;
        let nan = bitcast<f32>(0x7fc00000u | (u32(lid) & 0u));`;
    if (own) {
      return `${head}${wide}
        if (mode == MODE_EXPERT) {
          ${tiles.map(([i, j]) => `var acc${i}_${j} = ${res}();`).join(`
          `)}
          ${loads.regs}${depth > 1 ? BatchedGemmProgram.stageRegisters(loads.regs, depth) : ''}${body}
          let sgBase = ${serial ? '0u' : `u32(lid / ${HALF_MATRIX_SUBGROUP}) * ${c.sm * cols}u`};
          let lane = lid % ${HALF_MATRIX_SUBGROUP};${Array.from({length: rt}, (_, i) => {
            const stores = Array.from({length: ct}, (_, j) =>
              `subgroupMatrixStore(&Cs, sgBase + ${j * c.sn}u, acc${i}_${j}, false, u32(CW));`).join(`
          `);
            const out = this.matrixOwnStore(`${rowGroups > 1 ? 'i32(sgRow) + ' : ''}${i * c.sm}`, c.sm, cols);
            return serial ? `
          for (var turn = 0u; turn < ${c.subgroups}u; turn++) {
            if (u32(lid / ${HALF_MATRIX_SUBGROUP}) == turn) {
              ${stores}
            }
            workgroupBarrier();
            if (u32(lid / ${HALF_MATRIX_SUBGROUP}) == turn) {
              ${out}
            }
            workgroupBarrier();
          }` : `
          ${stores}
          workgroupBarrier();
          ${out}
          workgroupBarrier();`;
          }).join('')}
        } else if (mode == MODE_ZERO) {
          ${this.matrixZeroStore()}
        }
      }`;
    }
    return `${head}
        if (mode == MODE_EXPERT) {
          ${tiles.map(([i, j]) => `var acc${i}_${j} = ${res}();`).join(`
          `)}
          ${loads.regs}${depth > 1 ? BatchedGemmProgram.stageRegisters(loads.regs, depth) : ''}${body}
          ${tiles.map(([i, j]) =>
            `subgroupMatrixStore(&Cs, ${i * c.sm}u * u32(TN)${sgC}${sg} + ${j * c.sn}u, acc${i}_${j}, false, u32(TN));`).join(`
          `)}
        }
        workgroupBarrier();${wide}
        ${this.shape.swiglu ? this.matrixSwigluEpilogue() : this.matrixEpilogue()}
      }`;
  }

  /**
   * The register sets of stages 1 .. depth - 1 of a deep pipeline: copies of the staged loads' arrays (ra, rb, rc,
   * rs, rz) renamed with the stage's number; stage 0 keeps the original names.
   */
  private static stageRegisters(regs: string, depth: number): string {
    const arrays = regs.match(/var (ra|rb|rc|rs|rz) : [^;]*;/g) ?? [];
    let out = '';
    for (let s = 1; s < depth; s++) {
      out += arrays.map(a => `
        ${a.replace(/^var (\w+)/, `var $1${s}`)}`).join('');
    }
    return out;
  }

  /**
   * The k loop with the global loads `depth` TK steps ahead (MatrixConfig.depth): unrolled by depth, stage s owns
   * register set s (no dynamic register indexing), and its step stores set s, then refills it with the loads of
   * the step depth TK later before its multiplies. Every condition is on uniform values (K, k0), so the barriers
   * stay in uniform control flow.
   */
  private static deepPipeline(loads: {fetch: string, store: string}, steps: string, depth: number): string {
    const stage = (text: string, s: number) => s === 0 ? text : text.replace(/\b(ra|rb|rc|rs|rz)\[/g, `$1${s}[`);
    let prologue = `
          var kf = 0;${loads.fetch}`;
    let loop = '';
    for (let s = 1; s < depth; s++) {
      prologue += `
          kf = ${s} * TK;
          if (kf < K) {${stage(loads.fetch, s)}
          }`;
    }
    for (let s = 0; s < depth; s++) {
      loop += `
            let ks${s} = k0 + ${s} * TK;
            if (ks${s} < K) {${stage(loads.store, s).replace(/\bk0\b/g, `ks${s}`)}
              workgroupBarrier();
              kf = ks${s} + ${depth} * TK;
              if (kf < K) {${stage(loads.fetch, s)}
              }
              ${steps}
              workgroupBarrier();
            }`;
    }
    return `${prologue}
          for (var k0 = 0; k0 < K; k0 += ${depth} * TK) {${loop}
          }`;
  }

  /**
   * The k loop on double-buffered tiles (MatrixConfig.buffers 2), unrolled by two so that every buffer offset is
   * a constant (H200 batch b1: with offsets computed from k0 the GEMMs took 2.0 ms against 0.98): a step issues
   * the global loads of the next one, multiplies from its buffer, stores the loaded registers into the other
   * buffer, then one barrier. The next step reads what was stored before it, and a buffer is overwritten only
   * after every subgroup passed the barrier that followed its last reads. The store's k0 is the loaded step's (kf).
   */
  private static doubleBuffered(loads: {fetch: string, store: string}, steps: string): string {
    const into = (a: string, b: string, k: string) => loads.store.replace(/\bAs\[/g, `As[${a} + `)
        .replace(/\bBs\[/g, `Bs[${b} + `).replace(/\bk0\b/g, k);
    const from = (a: string, b: string) => steps.replace(/u32\(aCur\)/g, a).replace(/u32\(bCur\)/g, b);
    const step = (k: string, cur: 0 | 1) => `
            kf = ${k} + TK;
            if (kf < K) {${loads.fetch}
            }
            ${cur === 0 ? from('0u', '0u') : from('u32(A_BUF)', 'u32(B_BUF)')}
            if (kf < K) {${cur === 0 ? into('A_BUF', 'B_BUF', 'kf') : into('0', '0', 'kf')}
            }
            workgroupBarrier();`;
    return `
          var kf = 0;${loads.fetch}${into('0', '0', 'kf')}
          workgroupBarrier();
          for (var k0 = 0; k0 < K; k0 += 2 * TK) {${step('k0', 0)}
            if (k0 + TK < K) {${step('(k0 + TK)', 1)}
            }
          }`;
  }

  /**
   * Subgroup epilogue (MatrixConfig.epilogue 'subgroup'): the subgroup's 32 invocations write the `rows` x `cols`
   * results in its scratch Cs[sgBase ..] (row stride CW = cols) to tile rows `row0` + m of its column block; with
   * SwiGLU the block's first half holds gate columns and its second half the matching up columns.
   */
  private matrixOwnStore(row0: string, rows: number, cols: number): string {
    const at = (m: string, q: string) => `vec4<f32>(${[0, 1, 2, 3].map(j =>
        `Cs[sgBase + u32(${m}) * u32(CW) + u32(${q}) * 4u${j > 0 ? ` + ${j}u` : ''}]`).join(', ')})`;
    if (this.shape.swiglu) {
      const bias = this.shape.hasBias ? 'g += bias[expert * NV + logical]; u += bias[expert * NV + IV + logical];' : '';
      return `for (var idx = lane; idx < ${rows * cols / 8}; idx += ${HALF_MATRIX_SUBGROUP}) {
            let m = idx / ${cols / 8};
            let q = idx % ${cols / 8};
            let r = rowStart + ${row0} + m;
            let IV = NV / 2;
            let logical = colTile * (TNV / 2) + i32(sgCol) / 8 + q;
            if (r < rowEnd && logical < IV) {
              var g = ${at('m', 'q')};
              var u = ${at('m', `q + ${cols / 8}`)};
              ${bias}
              result[r * IV + logical] = select(vec4<f32>(nan), swiglu4(g, u)${this.scaleTerm('r')}, wide);
            }
          }`;
    }
    const bias = this.shape.hasBias ? 'v += bias[expert * NV + nv];' : '';
    return `for (var idx = lane; idx < ${rows * cols / 4}; idx += ${HALF_MATRIX_SUBGROUP}) {
            let m = idx / ${cols / 4};
            let q = idx % ${cols / 4};
            let r = rowStart + ${row0} + m;
            let nv = colTile * TNV + i32(sgCol) / 4 + q;
            if (r < rowEnd && nv < NV) {
              var v = ${at('m', 'q')};
              ${bias}
              result[r * NV + nv] = select(vec4<f32>(nan), v, wide);
            }
          }`;
  }

  /** Zeros for a tile of rows in no segment (the subgroup epilogue's other mode). */
  private matrixZeroStore(): string {
    const width = this.shape.swiglu ? 'TNV / 2' : 'TNV';
    const total = this.shape.swiglu ? 'NV / 2' : 'NV';
    return `for (var idx = lid; idx < TM * (${width}); idx += WGS) {
            let r = rowStart + idx / (${width});
            let col = colTile * (${width}) + idx % (${width});
            if (r < rowEnd && col < ${total}) { result[r * (${total}) + col] = vec4<f32>(0.0); }
          }`;
  }

  /** Matrix epilogue: vec4 of Cs row m, vector column q of the tile. */
  private static csVec(m: string, q: string): string {
    const at = (j: number) => `Cs[${m} * TN + (${q}) * 4${j > 0 ? ` + ${j}` : ''}]`;
    return `vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')})`;
  }

  private matrixEpilogue(): string {
    const bias = this.shape.hasBias ? 'v += bias[expert * NV + nv];' : '';
    return `
        if (mode != MODE_IDLE) {
          for (var idx = lid; idx < TM * TNV; idx += WGS) {
            let m = idx / TNV;
            let q = idx % TNV;
            let r = rowStart + m;
            let nv = colTile * TNV + q;
            if (r < rowEnd && nv < NV) {
              var v = vec4<f32>(0.0);
              if (mode == MODE_EXPERT) {
                v = ${BatchedGemmProgram.csVec('m', 'q')};
                ${bias}
                v = select(vec4<f32>(nan), v, wide);
              }
              result[r * NV + nv] = v;
            }
          }
        }`;
  }

  /** Matrix epilogue with SwiGLU: tile vector column q < TNV/2 is a gate column, q + TNV/2 its up column. */
  private matrixSwigluEpilogue(): string {
    const bias = this.shape.hasBias ? 'g += bias[expert * NV + logical]; u += bias[expert * NV + IV + logical];' : '';
    return `
        let IV = NV / 2;
        if (mode != MODE_IDLE) {
          for (var idx = lid; idx < TM * (TNV / 2); idx += WGS) {
            let m = idx / (TNV / 2);
            let q = idx % (TNV / 2);
            let r = rowStart + m;
            let logical = colTile * (TNV / 2) + q;
            if (r < rowEnd && logical < IV) {
              var v = vec4<f32>(0.0);
              if (mode == MODE_EXPERT) {
                var g = ${BatchedGemmProgram.csVec('m', 'q')};
                var u = ${BatchedGemmProgram.csVec('m', 'q + TNV / 2')};
                ${bias}
                v = swiglu4(g, u)${this.scaleTerm('r')};
                v = select(vec4<f32>(nan), v, wide);
              }
              result[r * IV + logical] = v;
            }
          }
        }`;
  }

  /** Tiled epilogue: each thread's RM x RN accumulators (+ bias), or zeros for rows in no segment. */
  private tiledEpilogue(c: TiledConfig): string {
    const vt = c.vec === 4 ? 'vec4<f32>' : 'f32';
    const bias = this.shape.hasBias ? 'v += bias[expert * NV + nv];' : '';
    return `
        if (mode != MODE_IDLE) {
          for (var i = 0; i < RM; i++) {
            let r = rowStart + ty * RM + i;
            if (r < rowEnd) {
              for (var j = 0; j < RN; j++) {
                let nv = colTile * TNV + tx + j * WX;
                if (nv < NV) {
                  var v = acc[i * RN + j];
                  if (mode == MODE_EXPERT) { ${bias} } else { v = ${vt}(0.0); }
                  result[r * NV + nv] = v;
                }
              }
            }
          }
        }`;
  }

  /** Tiled epilogue with SwiGLU: column j < RN/2 of a thread is a gate column, j + RN/2 its up column. */
  private tiledSwigluEpilogue(c: TiledConfig): string {
    const vt = c.vec === 4 ? 'vec4<f32>' : 'f32';
    const bias = this.shape.hasBias ? 'g += bias[expert * NV + logical]; u += bias[expert * NV + IV + logical];' : '';
    return `
        let IV = NV / 2;
        if (mode != MODE_IDLE) {
          for (var i = 0; i < RM; i++) {
            let r = rowStart + ty * RM + i;
            if (r < rowEnd) {
              for (var j = 0; j < RN / 2; j++) {
                let logical = colTile * (TNV / 2) + tx + j * WX;
                if (logical < IV) {
                  var v = ${vt}(0.0);
                  if (mode == MODE_EXPERT) {
                    var g = acc[i * RN + j];
                    var u = acc[i * RN + j + RN / 2];
                    ${bias}
                    v = ${c.vec === 4 ? 'swiglu4' : 'swiglu1'}(g, u)${this.scaleTerm('r')};
                  }
                  result[r * IV + logical] = v;
                }
              }
            }
          }
        }`;
  }
}
