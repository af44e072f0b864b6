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

/** Tiled program: stage the lhs tile (TM rows x TK) into As, transposed, with vec4 loads when K % 4 == 0. */
export function tiledLhsLoad(lhsVec: number): string {
  return lhsVec === 4 ? `
        for (var idx = lid; idx < TM * TK / 4; idx += WGS) {
          let m = idx / (TK / 4);
          let kq = idx % (TK / 4);
          let r = rowStart + m;
          let k = k0 + kq * 4;
          var v = vec4<f32>(0.0);
          if (r < rowEnd && k < K) { v = lhs[(r * K + k) / 4]; }
          As[(kq * 4) * TM + m] = v.x;
          As[(kq * 4 + 1) * TM + m] = v.y;
          As[(kq * 4 + 2) * TM + m] = v.z;
          As[(kq * 4 + 3) * TM + m] = v.w;
        }` : `
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

/** Tiled rhs loads: the vec4 column n of tile column nv, and whether it exists (with SwiGLU: gate/up halves). */
function tileColumn(swiglu: boolean): string {
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
                           decoder: WordDecoderOptions = {}): string {
  const P = codesPerWord(l.format), WR = STREAM_WORD_ROWS, KB = P * WR;
  const d = wordDecoder(l, decoder);
  const scaled = hasScales(l.format);
  const perStep = !scaled || l.groupSize % KB === 0;
  const words = Array.from({length: WR}, (_, r) => `
                var c${r} = vec4<u32>(0u);
                if (kw0 + ${r} < KW) { c${r} = bitcast<vec4<u32>>(packed[wBase + (kw0 + ${r}) * NV]); }`).join('');
  const step = groupTerms(l, 'step * KB / GROUP');
  const quads = Array.from({length: KB / 4}, (_, q) => {
    const cols = [0, 1, 2, 3].map(t => {
      const kk = 4 * q + t;
      const c = `c${Math.floor(kk / P)}`, j = kk % P;
      if (perStep) return d.codeRow(c, j, 'z');
      const g = groupTerms(l, `(k0 + ${kk}) / GROUP`);
      return `${g.scale} * ${d.codeRow(c, j, g.zero)}`;
    });
    return `
                    p += mat4x4<f32>(${cols.join(`,
                                     `)}) * select(vec4<f32>(0.0), ${names.lhs}[ab + ${q}], a0 + ${q} < K4);`;
  }).join('');
  return `
                let kw0 = step * ${WR};
                let k0 = step * KB;
                let a0 = step * (KB / 4);${words}
                ${perStep && scaled ? `let sc = ${step.scale};` : ''}
                ${perStep ? `let z = ${step.zero};` : ''}
                for (var i = 0; i < TM; i++) {
                  if (i < rows) {
                    let ab = (${names.lhsRow('i')}) * K4 + a0;
                    var p = vec4<f32>(0.0);${quads}
                    ${names.accumulate('i', `p${perStep && scaled ? ' * sc' : ''}`)}
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

/**
 * Tiled program, packed [E,K,N] weights (TK a multiple of P): each load decodes one vec4 of words into P rows of
 * the Bs tile, every weight exactly as docs/formats.md 3 (s * (c - z), one rounding), so the tile holds the
 * dequantized weights and the product is the float program's on them. k >= K stores zeros.
 */
export function packedTiledRhsLoad(l: ExpertWeightLayout, swiglu: boolean): string {
  const P = codesPerWord(l.format);
  const d = wordDecoder(l);
  const perWord = !hasScales(l.format) || l.groupSize % P === 0;
  const rows = Array.from({length: P}, (_, j) => {
    const t = perWord ? groupTerms(l, 'kw * P / GROUP') : groupTerms(l, `(kw * P + ${j}) / GROUP`);
    const z = perWord ? 'z' : t.zero;
    const value = t.scale == null ? d.codeRow('c', j, z) : `${perWord ? 'sc' : t.scale} * ${d.codeRow('c', j, z)}`;
    return `
          Bs[(kwl * P + ${j}) * TNV + nv] = select(vec4<f32>(0.0), ${value}, kw * P + ${j} < K);`;
  }).join('');
  const perWordTerms = groupTerms(l, 'kw * P / GROUP');
  return `
        for (var idx = lid; idx < (TK / ${P}) * TNV; idx += WGS) {
          const P = ${P};
          const GROUP = ${Math.max(1, l.groupSize)};
          let KW = (K + P - 1) / P;
          let G = (K + GROUP - 1) / GROUP;
          let kwl = idx / TNV;
          let nv = idx % TNV;
          ${tileColumn(swiglu)}
          let kw = k0 / P + kwl;
          var c = vec4<u32>(0u);
          if (kw < KW && colOk) { c = bitcast<vec4<u32>>(packed[(expert * KW + kw) * NV + n]); }
          ${perWord && perWordTerms.scale != null ? `let sc = ${perWordTerms.scale};` : ''}
          ${perWord ? `let z = ${perWordTerms.zero};` : ''}${rows}
        }`;
}
