/** WGSL snippets of the grouped GEMM programs (batched_gemm_webgpu.ts): the tile schedule shared by both, and loads. */
import {codesPerWord, ExpertWeightLayout, hasScales} from '../expert_weight_formats.js';
import {wordDecoder, WordDecoderOptions} from './quantized_webgpu.js';

/** The tile schedule (see the file comment). Defines findTile(tile) filling tileInfo = [expert, rowStart, rowEnd, mode]. */
export function scheduleSnippet(numExperts: number, wgs: number, tm: number): string {
  const parts = numExperts + 2;
  return `
    const NUM_PARTS = ${parts};
    const PARTS_PER_THREAD = ${Math.ceil(parts / wgs)};
    const SCHED_WG = ${wgs};
    const TILE_ROWS = ${tm};
    const MODE_IDLE = 0;
    const MODE_EXPERT = 1;
    const MODE_ZERO = 2;
    var<workgroup> schedScan : array<i32, SCHED_WG>;
    var<workgroup> tileInfo : array<i32, 4>;
    var<workgroup> wgShared : i32;

    fn partRows(p : i32, numRows : i32) -> vec2<i32> {
      var start = 0;
      var end = 0;
      if (p == 0) {
        end = offsets[0];
      } else if (p == NUM_PARTS - 1) {
        start = offsets[NUM_PARTS - 2];
        end = numRows;
      } else {
        start = offsets[p - 1];
        end = offsets[p];
      }
      start = clamp(start, 0, numRows);
      return vec2<i32>(start, clamp(end, start, numRows));
    }

    fn findTile(tile : i32, numRows : i32) {
      let lid = i32(localIndex);
      var tiles = 0;
      for (var q = 0; q < PARTS_PER_THREAD; q++) {
        let p = lid * PARTS_PER_THREAD + q;
        if (p < NUM_PARTS) {
          let pr = partRows(p, numRows);
          tiles += (pr.y - pr.x + TILE_ROWS - 1) / TILE_ROWS;
        }
      }
      if (lid == 0) { tileInfo[3] = MODE_IDLE; }
      schedScan[lid] = tiles;
      workgroupBarrier();
      for (var st = 1; st < SCHED_WG; st = st * 2) {
        var add = 0;
        if (lid >= st) { add = schedScan[lid - st]; }
        workgroupBarrier();
        schedScan[lid] = schedScan[lid] + add;
        workgroupBarrier();
      }
      let inclusive = schedScan[lid];
      if (tile >= inclusive - tiles && tile < inclusive) {
        var t = tile - (inclusive - tiles);
        for (var q = 0; q < PARTS_PER_THREAD; q++) {
          let p = lid * PARTS_PER_THREAD + q;
          if (p < NUM_PARTS && t >= 0) {
            let pr = partRows(p, numRows);
            let n = (pr.y - pr.x + TILE_ROWS - 1) / TILE_ROWS;
            if (t < n) {
              tileInfo[0] = p - 1;
              tileInfo[1] = pr.x + t * TILE_ROWS;
              tileInfo[2] = min(pr.x + (t + 1) * TILE_ROWS, pr.y);
              tileInfo[3] = select(MODE_EXPERT, MODE_ZERO, p == 0 || p == NUM_PARTS - 1);
            }
            t -= n;
          }
        }
      }
    }`;
}

/** Tiled program, lhs with K % 4 != 0: stage the lhs tile (TM rows x TK) into As, transposed, one value a time. */
export function tiledLhsLoad(): string {
  return `
        for (var idx = lid; idx < TM * TK; idx += WGS) {
          let m = idx / TK;
          let kk = idx % TK;
          let r = rowStart + m;
          let k = k0 + kk;
          var v = 0.0;
          if (r < rowEnd && k < K) { v = lhs[r * K + k]; }
          As[kk * TM + m] = v;
        }`;
}

/**
 * Tiled program: stage the rhs tile (TK x TNV vectors) into Bs, from [E,K,N] or the transposed [E,N,K]; with the
 * SwiGLU epilogue the tile's first half holds gate columns and its second half the matching up columns.
 */
export function tiledRhsLoad(transposeRhs: boolean, swiglu: boolean, vec: number, vt: string, packed = false):
    string {
  // Packed weights here go through the element decoder (weightAt, quantized_webgpu.ts), one weight at a time.
  const transposedRead = packed ? 'weightAt(expert, k, n)' : 'rhs[(expert * N + n) * K + k]';
  const read = !packed ? 'rhs[(expert * K + k) * NV + n]' : vec === 1 ? 'weightAt(expert, k, n)' :
      `vec4<f32>(${[0, 1, 2, 3].map(j => `weightAt(expert, k, n * 4 + ${j})`)})`;
  const storeB = vec === 4 ? 'Bs[kk * TNV + nn / 4][nn % 4] = v;' : 'Bs[kk * TNV + nn] = v;';
  return transposeRhs ? `
        for (var idx = lid; idx < TK * TNV * VEC; idx += WGS) {
          let nn = idx / TK;
          let kk = idx % TK;
          let n = colTile * TNV * VEC + nn;
          let k = k0 + kk;
          var v = 0.0;
          if (k < K && n < N) { v = ${transposedRead}; }
          ${storeB}
        }` : `
        for (var idx = lid; idx < TK * TNV; idx += WGS) {
          let kk = idx / TNV;
          let nv = idx % TNV;
          let k = k0 + kk;
          ${tileColumn(swiglu)}
          var v = ${vt}(0.0);
          if (k < K && colOk) { v = ${read}; }
          Bs[idx] = v;
        }`;
}

/**
 * Tiled rhs loads: the vec4 column n of tile column nv, and whether it exists (with SwiGLU: gate/up halves; with
 * `blocks` > 1 each of that many column blocks of the tile holds its own gate half and then the matching up half).
 */
function tileColumn(swiglu: boolean, blocks = 1): string {
  if (swiglu && blocks > 1) {
    return `
          // Column block nv / BW of the tile: gate columns, then the matching up columns.
          let bw = TNV / ${blocks};
          let w = nv % bw;
          let logical = colTile * (TNV / 2) + (nv / bw) * (bw / 2) + w % (bw / 2);
          let n = select(logical, NV / 2 + logical, w >= bw / 2);
          let colOk = logical < NV / 2;`;
  }
  return swiglu ? `
          // First half of the tile: gate columns; second half: the matching up columns.
          let logical = colTile * (TNV / 2) + nv % (TNV / 2);
          let n = select(logical, NV / 2 + logical, nv >= TNV / 2);
          let colOk = logical < NV / 2;` : `
          let n = colTile * TNV + nv;
          let colOk = n < NV;`;
}

/**
 * Word rows a stream k-lane loads per step (16 bytes each: 4 columns x P codes), so a step covers
 * KB = STREAM_WORD_ROWS * P values of k (8 for halves, 16 for int8, 32 for 4-bit codes) with 64 bytes in flight.
 */
export const STREAM_WORD_ROWS = 4;

/** The WGSL vec4 scale and zero point of k's group (k an expression), or null for the halves. */
function groupTerms(l: ExpertWeightLayout, g: string): {scale: string | null, zero: string} {
  const d = wordDecoder(l);
  const args = ['expert', g, 'G', 'n', 'NV'] as const;
  return {scale: d.groupScale?.(...args) ?? null, zero: d.groupZero?.(...args) ?? 'vec4<f32>(0.0)'};
}

/** Where a packed stream step reads its rows and adds its sums (the grouped GEMM's names by default). */
export interface PackedStepNames {
  /** The vec4 lhs array. */
  lhs: string;
  /** The lhs row of tile row i (a WGSL expression of i). */
  lhsRow: (i: string) => string;
  /** WGSL statement adding the vec4 sum v of tile row i. */
  accumulate: (i: string, v: string) => string;
}

const GEMM_STEP_NAMES: PackedStepNames = {lhs: 'lhs', lhsRow: i => `rowStart + ${i}`,
                                          accumulate: (i, v) => `acc[${i}] += ${v};`};

/**
 * The constants of a packed stream step along a depth of `depth` (a WGSL expression): P, KB, GROUP, KW, G and
 * steps = KB-steps along the depth.
 */
export function packedStepConsts(l: ExpertWeightLayout, depth = 'K'): string {
  const P = codesPerWord(l.format);
  return `
          const P = ${P};
          const KB = ${P * STREAM_WORD_ROWS};
          const GROUP = ${Math.max(1, l.groupSize)};
          let KW = (${depth} + P - 1) / P;
          let G = (${depth} + GROUP - 1) / GROUP;
          let steps = (${depth} + KB - 1) / KB;`;
}

/** How a packed stream step is generated (the word decoder's options and the loop order). */
export interface PackedStepOptions extends WordDecoderOptions {
  /**
   * Decode each quad of codes once and apply it to every row (rows the inner loop, a vec4 partial sum per row in
   * registers) instead of decoding it again for each row (absent: false). The same FMAs in the same order per row,
   * so the same values.
   */
  decodeOnce?: boolean;
  /**
   * The step's words c0.. are already in scope (loaded ahead by the caller with packedWords; absent: false, the
   * step loads them first).
   */
  preloaded?: boolean;
  /**
   * The depth is a multiple of KB, so no step reaches past it: the words and lhs are read without bounds checks
   * (absent: false, each checked).
   */
  wholeSteps?: boolean;
  /**
   * With decodeOnce: TM (the rows in registers, a number): the step written out once per row count 1..TM, each
   * case straight-line code on constant row indices (no per-quad row loop and its branches), picked by `rows`
   * (absent: the row loop). The same FMAs in the same order per row.
   */
  rowCases?: number;
  /** With rowCases: only the case of this many rows, unconditionally (the caller picked it by `rows`). */
  rowCount?: number;
}

/**
 * WGSL loading the STREAM_WORD_ROWS vec4 words of the step at word row `kw0` (expressions; KW, NV in scope) into
 * `${v}0` .. (declared with `var` when `declare`), zero past KW.
 */
export function packedWords(kw0: string, wBase: string, v = 'c', declare = true, checked = true): string {
  const load = (r: number) => `bitcast<vec4<u32>>(packed[${wBase} + (${kw0} + ${r}) * NV])`;
  return Array.from({length: STREAM_WORD_ROWS}, (_, r) => checked ? `
                ${declare ? 'var ' : ''}${v}${r} = vec4<u32>(0u);
                if (${kw0} + ${r} < KW) { ${v}${r} = ${load(r)}; }` : `
                ${declare ? 'let ' : ''}${v}${r} = ${load(r)};`).join('');
}

/**
 * One stream step `step` of packed [E,K,N] weights (packedStepConsts in scope; also expert, the vec4 column n of
 * NV, wBase = expert * KW * NV + n, K4, TM and rows): its STREAM_WORD_ROWS vec4 words loaded before any arithmetic,
 * then each row's sum. When a step lies in one scale group (groupSize a multiple of KB, which holds for every int4
 * / mxfp4 group, and int8 per column with K % 16 == 0) the codes are summed unscaled and the group's scale
 * multiplies that sum once (s * sum(a * (c - z)), the same value as sum(a * s * (c - z)) up to float32 rounding);
 * otherwise every weight is decoded exactly as docs/formats.md 3. k >= K reads zero words and zero lhs (the
 * padding codes of int4 do not decode to 0).
 */
export function packedStep(l: ExpertWeightLayout, names: PackedStepNames = GEMM_STEP_NAMES,
                           options: PackedStepOptions = {}): string {
  const P = codesPerWord(l.format), WR = STREAM_WORD_ROWS, KB = P * WR;
  const scaled = hasScales(l.format);
  const perStep = !scaled || l.groupSize % KB === 0;
  const d = wordDecoder(l, perStep ? options : {...options, int4Unit: undefined});
  // The decoder's power-of-two factor (exact), applied to a sum before its scale (never overflowing with it).
  const factor = (v: string) => d.codeFactor == null || d.codeFactor === 1 ? v : `(${v} * ${d.codeFactor.toFixed(1)})`;
  // Unit codes (1 + c / 16): the step also sums each row's lhs, and its zero point comes off that sum once.
  const unit = d.unitCodes === true;
  const whole = options.wholeSteps === true;
  const words = options.preloaded === true ? '' : packedWords('kw0', 'wBase', 'c', true, !whole);
  const step = groupTerms(l, 'step * KB / GROUP');
  const quad = (q: number) => `mat4x4<f32>(${[0, 1, 2, 3].map(t => {
    const kk = 4 * q + t;
    const c = `c${Math.floor(kk / P)}`, j = kk % P;
    if (perStep) return d.codeRow(c, j, 'z');
    const g = groupTerms(l, `(k0 + ${kk}) / GROUP`);
    return `${g.scale} * ${factor(d.codeRow(c, j, g.zero))}`;
  }).join(`,
                                     `)})`;
  const lhsQuad = (ab: string, q: number) => whole ? `${names.lhs}[${ab} + ${q}]` :
      `select(vec4<f32>(0.0), ${names.lhs}[${ab} + ${q}], a0 + ${q} < K4)`;
  const head = `
                let kw0 = step * ${WR};
                let k0 = step * KB;
                let a0 = step * (KB / 4);${words}
                ${perStep && scaled ? `let sc = ${step.scale};` : ''}
                ${perStep ? `let z = ${step.zero};` : ''}`;
  // unit: s * 16 * (sum(a * v) - (1 + z / 16) * sum(a)), the subtraction once per step and row.
  const unsum = (v: string, sx: string) => unit ? `((${v} - ${sx} * (vec4<f32>(1.0) + z * 0.0625)) * 16.0)` : v;
  const sum = (v: string, sx = '') => `${perStep ? factor(unsum(v, sx)) : v}${perStep && scaled ? ' * sc' : ''}`;
  const lhsSum = (sx: string) => unit ? `
                    ${sx} += (a.x + a.y) + (a.z + a.w);` : '';
  if (options.decodeOnce === true && options.rowCases != null && options.rowCases >= 1) {
    const body = (r: number) => {
      const rs = Array.from({length: r}, (_, i) => i);
      const quads = Array.from({length: KB / 4}, (_, q) => `
                  {
                    let dq = ${quad(q)};${rs.map(i => `
                    let v${i} = ${lhsQuad(`(${names.lhsRow(`${i}`)}) * K4 + a0`, q)};
                    p${i} += dq * v${i};${unit ? `
                    sx${i} += (v${i}.x + v${i}.y) + (v${i}.z + v${i}.w);` : ''}`).join('')}
                  }`).join('');
      return `{${rs.map(i => `
                  var p${i} = vec4<f32>(0.0);${unit ? `
                  var sx${i} = 0.0;` : ''}`).join('')}${quads}${rs.map(i => `
                  ${names.accumulate(`${i}`, sum(`p${i}`, `sx${i}`))}`).join('')}
                }`;
    };
    if (options.rowCount != null) return `${head}
                ${body(options.rowCount)}`;
    const cases = Array.from({length: options.rowCases}, (_, c) => c + 1);
    return `${head}
                ${cases.map(r => r === options.rowCases ? `${r > 1 ? '{' : ''}${body(r)}${r > 1 ? '}' : ''}` :
                                  `if (rows == ${r}) ${body(r)} else `).join('')}`;
  }
  if (options.decodeOnce === true) {
    const quads = Array.from({length: KB / 4}, (_, q) => `
                {
                  let dq = ${quad(q)};
                  for (var i = 0; i < TM; i++) {
                    if (i < rows) {${unit ? `
                      let a = ${lhsQuad(`(${names.lhsRow('i')}) * K4 + a0`, q)};
                      p[i] += dq * a;${lhsSum('sx[i]')}
                    ` : ` p[i] += dq * ${lhsQuad(`(${names.lhsRow('i')}) * K4 + a0`, q)}; `}}
                  }
                }`).join('');
    return `${head}
                var p = array<vec4<f32>, TM>();${unit ? `
                var sx = array<f32, TM>();` : ''}${quads}
                for (var i = 0; i < TM; i++) {
                  if (i < rows) { ${names.accumulate('i', sum('p[i]', 'sx[i]'))} }
                }`;
  }
  const quads = Array.from({length: KB / 4}, (_, q) => unit ? `
                    {
                      let a = ${lhsQuad('ab', q)};
                      p += ${quad(q)} * a;${lhsSum('sx')}
                    }` : `
                    p += ${quad(q)} * ${lhsQuad('ab', q)};`).join('');
  return `${head}
                for (var i = 0; i < TM; i++) {
                  if (i < rows) {
                    let ab = (${names.lhsRow('i')}) * K4 + a0;
                    var p = vec4<f32>(0.0);${unit ? `
                    var sx = 0.0;` : ''}${quads}
                    ${names.accumulate('i', sum('p', 'sx'))}
                  }
                }`;
}

/**
 * Stream program, packed [E,K,N] weights: lane s takes steps s, s + KS, ... of KB values of k (packedStep).
 */
export function packedStreamStep(l: ExpertWeightLayout): string {
  return `
        if (mode == MODE_EXPERT) {${packedStepConsts(l)}
          let wBase = expert * KW * NV + nv;
          let n = nv;
          for (var sb = 0; sb < steps; sb += KS * U) {
            for (var u = 0; u < U; u++) {
              let step = sb + u * KS + s;
              if (step < steps && colOk) {${packedStep(l)}
              }
            }
          }
        }`;
}

/** The tiled program's vec4 tile loads, split so the global reads of one k step can be issued before the FMAs of the
 * previous one: `fetch` reads step kf's lhs and rhs vectors (or packed words) into registers, `store` writes the
 * registers of step k0 into As / Bs (decoding packed words there). */
export interface StagedLoads {
  regs: string;
  fetch: string;
  store: string;
}

export interface StagedTile {
  tm: number;
  tk: number;
  tnv: number;
  wgs: number;
  /** 4: As holds vec4 of 4 rows (TM % 4 == 0). */
  av: 1 | 4;
  /**
   * As / Bs are f16 scalars (the subgroup-matrix program: As [TM][SA], Bs [TK][SB], row-major, the strides SA >= TK
   * and SB >= TN WGSL constants in scope); av must be 1.
   */
  half?: boolean;
  /** With half: decode to f16 directly (MatrixConfig.hd: symmetric int4, int8 and float16; others as without it). */
  halfDecode?: boolean;
  /** With half: the lhs tile read k fastest across threads (MatrixConfig.lhsKFast). */
  lhsKFast?: boolean;
  /** With halfDecode: K is a multiple of TK, so the decoded rows need no k < K selects (MatrixConfig.wholeSteps). */
  wholeSteps?: boolean;
  /** With half: 'nob' leaves the weight tile unstaged, 'nost' both tiles (MatrixConfig.probe). */
  probe?: 'nob' | 'nost';
  /** With swiglu: column blocks that each hold gate then up columns (tileColumn; default 1: the tile's halves). */
  swigluBlocks?: number;
  swiglu: boolean;
  /** 'float': vec4 rhs [E,K,N]; 'packed': the word decoders (TK a multiple of their P); 'none': lhs only. */
  rhs: 'float' | 'packed' | 'none';
  packed?: ExpertWeightLayout;
}

/**
 * Staged loads (lhs K % 4 == 0; rhs [E,K,N] vec4, or none: the caller loads rhs one value at a time). The lhs tile is read with the row fastest across threads, so
 * the transposed stores into As hit distinct banks. Packed rhs: each thread loads one vec4 of words (4 columns x P
 * consecutive k) and its group's scale / zero point, and its store decodes P rows of Bs, every weight exactly as
 * docs/formats.md 3 (s * (c - z), one rounding): the tile holds the dequantized weights and the product is the
 * float program's on them. k >= K stores zeros.
 */
export function stagedTileLoads(t: StagedTile): StagedLoads {
  const la = Math.ceil(t.tm * t.tk / 4 / t.wgs);
  // Half tiles: the lhs vec4 as two packed f32 -> f16 pairs (HALF_PAIR_SNIPPET), four scalars of As.
  const aStore = t.av === 4 ?
      (j: number) => `As[(kq * 4 + ${j}) * (TM / 4) + m / 4][m % 4] = v.${'xyzw'[j]};` :
      t.half ? (j: number) => `As[m * SA + kq * 4 + ${j}] = ${j < 2 ? 'hl' : 'hh'}.${'xy'[j % 2]};` :
      (j: number) => `As[(kq * 4 + ${j}) * TM + m] = v.${'xyzw'[j]};`;
  const aPairs = t.half ? `
              let hl = toHalf2(v.xy);
              let hh = toHalf2(v.zw);` : '';
  // A vec4 of Bs at tile row `row`, vector column `nv`: one vec4 element, or four f16 scalars (subgroupMatrixLoad
  // reads arrays of scalars; the four are adjacent, one 8-byte store where the compiler merges them).
  const bStore = (row: string, nv: string, value: string) => !t.half ? `Bs[(${row}) * TNV + ${nv}] = ${value};` : `{
                let o = (${row}) * SB + (${nv}) * 4;
                let h = vec4<f16>(${value});
                Bs[o] = h.x;
                Bs[o + 1] = h.y;
                Bs[o + 2] = h.z;
                Bs[o + 3] = h.w;
              }`;
  const stageA = t.probe !== 'nost', stageB = t.probe == null;
  // Row fastest across threads (the transposed f32 stores hit distinct banks), or with lhsKFast k fastest (a row's
  // TK values are one contiguous read: whole 32-byte sectors when TM rows would each take half of one).
  const lhsIndex = t.lhsKFast === true ? `let m = idx / (TK / 4);
            let kq = idx % (TK / 4);` : `let m = idx % TM;
            let kq = idx / TM;`;
  let lhsFetch = `
          for (var l = 0; l < ${la}; l++) {
            let idx = lid + l * WGS;
            ${lhsIndex}
            let r = rowStart + m;
            let k = kf + kq * 4;
            var v = vec4<f32>(0.0);
            if (idx < TM * TK / 4 && r < rowEnd && k < K) { v = lhs[(r * K + k) / 4]; }
            ra[l] = v;
          }`;
  let lhsStore = `
          for (var l = 0; l < ${la}; l++) {
            let idx = lid + l * WGS;
            if (idx < TM * TK / 4) {
              ${lhsIndex}
              let v = ra[l];${aPairs}
              ${[0, 1, 2, 3].map(aStore).join('\n              ')}
            }
          }`;
  if (!stageA) {
    lhsFetch = '';
    // The probes keep every binding referenced (an unreferenced one drops out of the pipeline's layout).
    lhsStore = `
          if (K < 0) { As[0] = f16(lhs[0].x); }`;
  }
  if (t.rhs === 'none') return {regs: `var ra : array<vec4<f32>, ${la}>;`, fetch: lhsFetch, store: lhsStore};
  const l = t.packed;
  if (!stageB) {
    const touch = l == null ? ['rhs[0].x'] : ['f32(packed[0].x)',
      ...(hasScales(l.format) ? [l.format === 'mxfp4' ? 'f32(scales[0])' : 'scales[0].x'] : []),
      ...(l.zeroPoint ? ['zeros[0].x'] : [])];
    return {regs: `var ra : array<vec4<f32>, ${la}>;`, fetch: lhsFetch, store: lhsStore + `
          if (K < 0) { Bs[0] = f16(${touch.join(' + ')}); }`};
  }
  if (t.rhs === 'float' || l == null) {
    const lb = Math.ceil(t.tk * t.tnv / t.wgs);
    return {
      regs: `var ra : array<vec4<f32>, ${la}>;
        var rb : array<vec4<f32>, ${lb}>;`,
      fetch: lhsFetch + `
          for (var l = 0; l < ${lb}; l++) {
            let idx = lid + l * WGS;
            let kk = idx / TNV;
            let nv = idx % TNV;
            let k = kf + kk;
            ${tileColumn(t.swiglu, t.swigluBlocks)}
            var v = vec4<f32>(0.0);
            if (idx < TK * TNV && k < K && colOk) { v = rhs[(expert * K + k) * NV + n]; }
            rb[l] = v;
          }`,
      store: lhsStore + `
          for (var l = 0; l < ${lb}; l++) {
            let idx = lid + l * WGS;
            if (idx < TK * TNV) { ${t.half ? bStore('idx / TNV', 'idx % TNV', 'rb[l]') : 'Bs[idx] = rb[l];'} }
          }`,
    };
  }
  const P = codesPerWord(l.format);
  const lb = Math.ceil(t.tk / P * t.tnv / t.wgs);
  const d = wordDecoder(l);
  const scaled = hasScales(l.format);
  // Every practical group is whole words (groupSize % P == 0): one scale per loaded word, fetched with it.
  const perWord = !scaled || l.groupSize % P === 0;
  const wordTerms = groupTerms(l, 'kw * P / GROUP');
  const fetchScale = perWord && wordTerms.scale != null;
  const fetchZero = perWord && l.zeroPoint;
  const halfDecode = t.half === true && t.halfDecode === true && perWord &&
      (l.format === 'float16' || l.format === 'int8' || (l.format === 'int4' && !l.zeroPoint));
  const rows = halfDecode ? halfDecodedRows(l, t.wholeSteps === true) : Array.from({length: P}, (_, j) => {
    const g = perWord ? null : groupTerms(l, `(kw * P + ${j}) / GROUP`);
    const z = perWord ? (fetchZero ? 'rz[l]' : wordTerms.zero) : g!.zero;
    const code = d.codeRow('rc[l]', j, z);
    const value = !scaled ? code : `${perWord ? 'rs[l]' : g!.scale} * ${code}`;
    return `
              ${bStore(`kwl * P + ${j}`, 'nv', `select(vec4<f32>(0.0), ${value}, kw * P + ${j} < K)`)}`;
  }).join('');
  return {
    regs: `var ra : array<vec4<f32>, ${la}>;
        var rc : array<vec4<u32>, ${lb}>;${fetchScale ? `
        var rs : array<vec4<f32>, ${lb}>;` : ''}${fetchZero ? `
        var rz : array<vec4<f32>, ${lb}>;` : ''}
        const P = ${P};
        const GROUP = ${Math.max(1, l.groupSize)};
        let KW = (K + P - 1) / P;
        let G = (K + GROUP - 1) / GROUP;`,
    fetch: lhsFetch + `
          for (var l = 0; l < ${lb}; l++) {
            let idx = lid + l * WGS;
            let kwl = idx / TNV;
            let nv = idx % TNV;
            ${tileColumn(t.swiglu, t.swigluBlocks)}
            let kw = kf / P + kwl;
            var c = vec4<u32>(0u);${fetchScale ? `
            var sc = vec4<f32>(0.0);` : ''}${fetchZero ? `
            var zp = vec4<f32>(0.0);` : ''}
            if (idx < (TK / P) * TNV && kw < KW && colOk) {
              c = bitcast<vec4<u32>>(packed[(expert * KW + kw) * NV + n]);${fetchScale ? `
              sc = ${wordTerms.scale};` : ''}${fetchZero ? `
              zp = ${wordTerms.zero};` : ''}
            }
            rc[l] = c;${fetchScale ? `
            rs[l] = sc;` : ''}${fetchZero ? `
            rz[l] = zp;` : ''}
          }`,
    store: lhsStore + `
          for (var l = 0; l < ${lb}; l++) {
            let idx = lid + l * WGS;
            if (idx < (TK / P) * TNV) {
              let kwl = idx / TNV;
              let nv = idx % TNV;
              ${perWord ? '' : `${tileColumn(t.swiglu, t.swigluBlocks)}`}
              let kw = k0 / P + kwl;${rows}
            }
          }`,
  };
}

/**
 * WGSL helpers of the half tiles (declared by the matrix program): `toHalf2` rounds two f32 to f16 in one packing
 * operation, `halfPair` reads a word as its two halves (low first). spec/webgpu/half_matrices_program.spec.ts
 * replaces both bodies when it emulates the matrices in f32.
 */
export const HALF_PAIR_SNIPPET = `
      fn toHalf2(v : vec2<f32>) -> vec2<f16> { return bitcast<vec2<f16>>(pack2x16float(v)); }
      fn halfPair(u : u32) -> vec2<f16> { return bitcast<vec2<f16>>(u); }`;

/**
 * The f16 decode of one vec4 word load rc[l] (4 columns x P codes) into P rows of Bs (StagedTile.halfDecode).
 * float16: each word is rows 2 kw' and 2 kw' + 1 of its column, as they are. Symmetric int4: the masked word
 * (w >> 4j) & 0x000f000f holds codes j and j + 4; with 0x64006400 its halves are 1024 + c, exact, and minus 1032
 * c - 8, exact; int8 likewise with bytes j and j + 2 (1024 + 128 + q, minus 1152); times the group's scale
 * rounded to f16 (one rounding more than the f32 decode). Rows k >= K are zeros.
 */
function halfDecodedRows(l: ExpertWeightLayout, wholeSteps: boolean): string {
  const store = (row: string, q: string[], ok: string) => `
              {
                let o = (${row}) * SB + nv * 4;
                let h = ${wholeSteps ? `vec4<f16>(${q.join(', ')})` : `select(vec4<f16>(0.0), vec4<f16>(${q.join(', ')}), ${ok})`};
                Bs[o] = h.x;
                Bs[o + 1] = h.y;
                Bs[o + 2] = h.z;
                Bs[o + 3] = h.w;
              }`;
  const cols = ['x', 'y', 'z', 'w'];
  if (l.format === 'float16') {
    return `
              let p0 = halfPair(rc[l].x);
              let p1 = halfPair(rc[l].y);
              let p2 = halfPair(rc[l].z);
              let p3 = halfPair(rc[l].w);` +
        store('kwl * 2', cols.map((_, c) => `p${c}.x`), 'kw * 2 < K') +
        store('kwl * 2 + 1', cols.map((_, c) => `p${c}.y`), 'kw * 2 + 1 < K');
  }
  // Codes j and j + P/2 of each word in one 32-bit lane pair: int4 nibbles, int8 bytes (XOR 0x80: offset binary,
  // 1024 + 128 + c as a half).
  const P = codesPerWord(l.format), pairs = P / 2, bits = 32 / P;
  const mask = l.format === 'int8' ? '0x00ff00ffu' : '0x000f000fu';
  const flip = l.format === 'int8' ? ' ^ vec4<u32>(0x00800080u)' : '';
  const offset = l.format === 'int8' ? '1152.0' : '1032.0';
  let out = `
              let s16 = vec4<f16>(rs[l]);`;
  for (let j = 0; j < pairs; j++) {
    out += `
              let m${j} = (((rc[l] >> vec4<u32>(${bits * j}u)) & vec4<u32>(${mask}))${flip}) | vec4<u32>(0x64006400u);` +
        cols.map(c => `
              let q${j}${c} = (halfPair(m${j}.${c}) - vec2<f16>(${offset})) * s16.${c};`).join('') +
        store(`kwl * P + ${j}`, cols.map(c => `q${j}${c}.x`), `kw * P + ${j} < K`) +
        store(`kwl * P + ${j + pairs}`, cols.map(c => `q${j}${c}.y`), `kw * P + ${j + pairs} < K`);
  }
  return out;
}
