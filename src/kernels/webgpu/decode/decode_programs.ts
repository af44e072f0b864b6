/**
 * WGSL of the whole-layer decode path (decode_forward.ts): four programs per FusedMoE forward at small T, written
 * as complete shaders (their own bindings and entry point) because they are encoded directly on the device, not
 * through tfjs's program wrapper. Every constant is baked in, T included; the pipeline key is the parameter record.
 *
 * 1. routerLogits: partial router logits [HS, T, E] = x [T, H] @ gate [H, E] over HS row splits of H (the 1 MB
 *    router matrix is read by many workgroups at once instead of one), and the shared-expert gate's partial logits.
 * 2. route: ONE workgroup sums the partials, routes every token (softmax or noaux_tc top-k, all tokens at once,
 *    each on its own group of lanes) and sorts the (token, slot) pairs by expert (a counting sort): slot ->
 *    expert / row / weight, row -> slot, and the list of active experts with their row segments.
 * 3. upGate: per active expert and column tile, the expert's [H, 2I] weights are streamed once for all its rows,
 *    SwiGLU (x the routing weight with probInAdvance) in the epilogue; the shared expert is one more unit whose
 *    rows are all T tokens.
 * 4. downCombine: the workgroup that owns a token's output columns reduces its k contributors (and the shared
 *    expert) itself, weighted, with the weighted down bias: no float atomics, no [T*k, H] intermediate.
 *
 * Folded (tiles.fold, the table's choice where measured faster): no program 2; every upGate workgroup runs its
 * code into workgroup memory and workgroup 0 writes the route buffer and slot weights for program 4.
 *
 * Packed expert weights (docs/formats.md, [E,K,N] layout): programs 3 and 4 decode the codes in their stream loops
 * with the grouped GEMM's packed step (batched_gemm_snippets.ts packedStep, wordDecoder of quantized_webgpu.ts: one
 * source for every format), the layout in the shape (and so in the pipeline key).
 *
 * Buffers (decode_forward.ts allocates them per layer and T): `work` f32 (partial logits, slot weights, partial
 * shared-gate logits), `route` i32 (layout in RouteLayout), `act` vec4 (expert activations [T*k, I] in row order,
 * then the shared expert's [T, S]). group(1) is per call: binding 0 = x, binding 1 = the output tensor's buffer.
 */
import {codesPerWord, ExpertWeightLayout, hasScales} from '../../expert_weight_formats.js';
import {packedStep, PackedStepNames, packedStepConsts, packedWords, STREAM_WORD_ROWS} from '../batched_gemm_snippets.js';
import {wordDecoder, WordDecoderOptions} from '../quantized_webgpu.js';
import {RANKING_SNIPPET} from '../webgpu_util.js';

export interface DecodeShape {
  T: number;
  H: number;
  E: number;
  K: number;
  I: number;
  /** Shared expert width (0: none). */
  S: number;
  sharedGate: boolean;
  method: 'softmax' | 'grouped';
  /** Selection-only correction bias. */
  hasCorrectionBias: boolean;
  renormalize: boolean;
  nGroup: number;
  topkGroup: number;
  routedScalingFactor: number;
  withBias: boolean;
  probInAdvance: boolean;
  /** The routed experts' packed layouts ([E,K,N]; null: float32 weights). */
  upPacked: ExpertWeightLayout | null;
  downPacked: ExpertWeightLayout | null;
  /**
   * The device's smallest subgroup size where it has the `subgroups` feature (absent or 0: none); the route
   * program's lane reductions may then use subgroup shuffles (DecodeTiles.routeSubgroups).
   */
  subgroupSize?: number;
}

/** Tunable launch shapes (data: the bench picks them). */
export interface DecodeTiles {
  /** upGate: vec4 columns per workgroup (half gate, half up) and k-lanes; nv * ks = 256. */
  upNv: number;
  upKs: number;
  /** downCombine: vec4 output columns per workgroup and k-lanes; nv * ks = 256. */
  downNv: number;
  downKs: number;
  /** upGate: rows of an expert kept in registers at once (an expert with more rows streams its weights again). */
  upRows: number;
  /** route: at most this many lanes per token in its reductions (a power of two; fewer lanes, fewer barriers). */
  routeLanes: number;
  /**
   * route: top-k as K rounds of a lane arg-max ('rounds': each lane loops over its candidates in workgroup memory;
   * 'keys': each lane's candidates as (order key, expert) pairs in registers, its best by a compare tree), or by
   * each expert's rank (no rounds, E comparisons a pair). All three select the same experts (one total order).
   */
  routeTopk: 'rounds' | 'keys' | 'rank';
  /**
   * route: the token lanes' reductions (softmax max and sum, the 'keys' top-k rounds) by subgroup shuffles, no
   * workgroup memory or barriers, where the device has subgroups (DecodeShape.subgroupSize; a token's lanes then
   * at most that many); elsewhere the workgroup-memory reductions (absent: false). Bitwise the same results.
   */
  routeSubgroups?: boolean;
  /**
   * route: each slot's row within its expert from a bit mask of the expert's tokens (a token's slots hold
   * distinct experts, T <= 32), one popcount, instead of a loop over the earlier slots ('loop'; absent: 'loop').
   */
  routePlace?: 'loop' | 'mask';
  /** routerLogits: the most partial logits (splits x T x E) it leaves for the route program to sum. */
  routerPartials: number;
  /**
   * Three programs instead of four: every upGate workgroup routes the tokens itself (the route program's code, into
   * workgroup memory) and workgroup 0 also writes the routing for the down program (absent: false). Redundant but
   * small at small T; it removes a dispatch that waits on the one before.
   */
  fold?: boolean;
  /**
   * downCombine: the k-lanes take (contributor, k-step) items of all K contributors in turn (every lane the same
   * count) instead of every contributor's k-steps s, s + KS, ... (absent: false; packed weights always take items).
   * Float32 on the H200 (BENCHMARKS.md session 3 batch E): slower in the forward at T = 1 (0.038 vs 0.031 ms).
   */
  downFlat?: boolean;
  /**
   * downCombine with items: items per lane whose loads are issued before their FMAs (absent: 1); packed weights:
   * items per iteration of a loop with a constant inner bound.
   */
  downUnroll?: number;
  /**
   * upGate, float weights: k-steps per lane whose loads are issued before their FMAs (absent: 1; batch E: a tie);
   * packed weights: steps per iteration of a loop with a constant inner bound.
   */
  upUnroll?: number;
  /**
   * route: threads of its one workgroup (a power of two, at least T; absent: 256). Fewer threads, cheaper
   * barriers; the folded variant routes with all 256 of upGate's.
   */
  routeThreads?: number;
  /** Packed int8 / int4 codes to floats by exponent bits, no conversion instruction (WordDecoderOptions; batch F: a
   * tie for int4, slower for int8 at T = 16). */
  exponentBits?: boolean;
  /**
   * upGate, packed weights: each quad of codes decoded once for all the rows in registers (PackedStepOptions
   * decodeOnce) instead of once per row (absent: false).
   */
  decodeOnce?: boolean;
  /** mxfp4 codes as float16 bit patterns, two per unpack2x16float (WordDecoderOptions e2m1Half; absent: false). */
  e2m1Half?: boolean;
  /** int4 codes as float16 bit patterns 1024 + c, two per unpack2x16float (WordDecoderOptions int4Half; absent: false). */
  int4Half?: boolean;
  /**
   * int4 codes as 1 + c / 16, the zero point subtracted once per step from each row's lhs sum instead of from
   * every code (WordDecoderOptions int4Unit: 'half' two per unpack2x16float, 'bits' float32 bits per code; absent:
   * off; wins over int4Half and exponentBits where a step lies in one scale group). Sums in another order: see
   * docs/semantics.md.
   */
  int4Unit?: 'half' | 'bits';
  /**
   * upGate / down, packed weights: each lane loads its next step's (down: item's) words before the current step's
   * arithmetic, so their latency overlaps it (absent: false; two steps' words in registers).
   */
  upPrefetch?: boolean;
  downPrefetch?: boolean;
  /**
   * upGate, packed weights: the pass's rows of x copied into workgroup memory once (the reduction's array, free
   * until the stream ends) and read from there, where they fit in 16 KB (absent: false, read from x).
   */
  upStageX?: boolean;
  /**
   * Both expert programs, packed weights: where the depth (H for upGate, I for down) is a multiple of a step's
   * values, the words and lhs are read without bounds checks (PackedStepOptions wholeSteps; absent: false).
   */
  unchecked?: boolean;
  /**
   * Packed down weights, no shared expert: the down program per (active expert, column tile) like upGate, each quad
   * of codes decoded once for up to downRows of the expert's rows in registers, its rows written to a [T * K, H]
   * buffer, and a fifth program (combine) summing each token's K rows weighted, and the biases (absent: false: per
   * token, every contributor's codes decoded again for each token routed to the expert).
   */
  downByExpert?: boolean;
  /** downByExpert: rows of an expert in registers at once (absent: 4). */
  downRows?: number;
  /**
   * route (and folded routing): the router's partial logits summed by all threads, each loading its share of one
   * logit's splits with every load issued before the first add, then added across threads in workgroup memory
   * ('spread', where T * E <= the threads; with more logits, each thread's loads of its logits' splits all written
   * out before the adds, where at most 256), or each thread looping over the splits ('loop'; absent: 'loop'). A loop
   * of dependent loads pays a memory latency per split (H200 batch E: the route's time grows ~0.33 us per split).
   */
  routeLoads?: 'loop' | 'spread';
  /** routerLogits: row steps per lane whose loads are issued before their FMAs (absent: 1, a loop). */
  routerUnroll?: number;
  /**
   * routerLogits: tokens whose partial sums go through workgroup memory per barrier pair at the end (at most 16:
   * 16 KB; absent: 1). At T = 16 one token per round is 32 barriers and 16 serial passes per workgroup; the lanes'
   * sums are added in the same order either way (bitwise the same partials).
   */
  routerReduceRows?: number;
  /**
   * upGate: thread 0 loads the active unit count and the unit's expert and row range at once (one round trip to
   * the route buffer before the workgroup's uniform load) instead of the count first (absent: false). The same
   * values.
   */
  upInfoAtOnce?: boolean;
  /**
   * routerLogits: workgroups per (split, column group), each taking ceil(T / this) of the tokens (absent: 1; not
   * with routerVec4). At T = 16 the router runs 64 workgroups, half the H200's SMs; the same partials.
   */
  routerTokenGroups?: number;
  /**
   * The per-token down program's workgroups in column-tile-major order (workgroup w: token w % T, tile w / T)
   * instead of token-major (absent: false). The same sums; which workgroups run side by side changes.
   */
  downTileMajor?: boolean;
  /**
   * upGate with decodeOnce, packed weights: the step written out per row count 1..upRows (straight-line code on
   * constant row indices, no row loop inside the step; PackedStepOptions rowCases) instead of the row loop
   * (absent: false). The same sums.
   */
  upRowCases?: boolean;
  /**
   * routerLogits: the workgroup's rows of x (its split, its tokens) staged in workgroup memory by one round of
   * loads before the row loop, which then waits on the router's loads only (absent: false; not with routerVec4;
   * where they fit beside the reduction's array in 16 KB). The same products in the same order (bitwise the same
   * partials). Alone no faster on the H200 (session 9 B1: the router's time is not its x loads); the T = 16 rows
   * take it with the token groups / splits it was measured with (decode_tuning.ts).
   */
  routerStageX?: boolean;
  /** With upRowCases: one stream loop per row count, the count picked once per pass, not per step (absent: false). */
  upRowLoops?: boolean;
  /**
   * routerLogits: each lane step takes 4 rows of H and reads x as vec4, T + 4 loads per 4 rows instead of 4 (T + 1)
   * (absent: false; needs H % 4 == 0, which the decode path requires anyway; routerUnroll does not apply).
   */
  routerVec4?: boolean;
}

export const DECODE_THREADS = 256;
/** The 'keys' top-k's most candidates per lane (registers); a token with more per lane takes the rounds. */
const MAX_KEY_CANDIDATES = 32;

export function routerSplits(s: DecodeShape, t: DecodeTiles): {hs: number, hsGate: number} {
  // Enough workgroups to have the router matrix in flight at once, few enough partials for one workgroup to sum.
  const hs = Math.max(1, Math.min(Math.ceil(s.H / 16), Math.floor(t.routerPartials / (s.T * s.E)), 32));
  const hsGate = s.sharedGate ? Math.max(1, Math.min(Math.ceil(s.H / 16), 64)) : 0;
  return {hs, hsGate};
}

/** Offsets (elements) into the `work`, `route` and `act` buffers. */
export interface DecodeLayout {
  workLogits: number;
  workSlotWeight: number;
  workSharedGate: number;
  workSize: number;
  routeSlotExpert: number;
  routeSlotRow: number;
  routeRowSlot: number;
  routeNumActive: number;
  routeActiveExpert: number;
  routeActiveStart: number;
  routeSize: number;
  /** vec4 units. */
  actShared: number;
  actSize: number;
}

export function decodeLayout(s: DecodeShape, t: DecodeTiles): DecodeLayout {
  const {hs, hsGate} = routerSplits(s, t);
  const slots = s.T * s.K;
  const maxActive = Math.min(s.E, slots);
  const workLogits = 0, workSlotWeight = hs * s.T * s.E, workSharedGate = workSlotWeight + slots;
  const routeSlotExpert = 0, routeSlotRow = slots, routeRowSlot = 2 * slots, routeNumActive = 3 * slots;
  const routeActiveExpert = routeNumActive + 1, routeActiveStart = routeActiveExpert + maxActive;
  const actShared = slots * s.I / 4;
  return {workLogits, workSlotWeight, workSharedGate, workSize: workSharedGate + hsGate * s.T,
    routeSlotExpert, routeSlotRow, routeRowSlot, routeNumActive, routeActiveExpert, routeActiveStart,
    routeSize: routeActiveStart + maxActive + 1, actShared, actSize: actShared + s.T * s.S / 4};
}

/** Shared memory the route program needs (bytes), to compare with the device's limit. */
export function routeSharedBytes(s: DecodeShape): number {
  const groups = s.method === 'grouped' ? s.T * s.nGroup * 2 : 0;
  // keys top-k's pair per thread and the mask placement's word per expert counted whether used or not.
  return 4 * (2 * s.T * s.E + 2 * s.T * s.K + s.E * 3 + 6 * DECODE_THREADS + 3 * s.T + groups + s.T);
}

/** Whether the route program reduces over a token's lanes with subgroup shuffles (DecodeTiles.routeSubgroups). */
export function routeUsesSubgroups(s: DecodeShape, t: DecodeTiles): boolean {
  return t.routeSubgroups === true && (s.subgroupSize ?? 0) >= 1;
}

/** Rows the upGate program reduces per pass through shared memory (16 B per thread and row). */
function upReduceRows(s: DecodeShape, t: DecodeTiles): number {
  return Math.max(1, Math.min(s.T, t.upRows, t.upKs, 4));
}

/** Whether upGate stages its rows of x in workgroup memory (DecodeTiles.upStageX): vec4s of it, else 0. */
function upStagedX(s: DecodeShape, t: DecodeTiles): number {
  const v = Math.min(s.T, t.upRows) * s.H / 4;
  return t.upStageX === true && s.upPacked != null && v * 16 <= 16384 ? v : 0;
}

/** Rows the expert-major down program keeps in registers and reduces per pass (16 B per thread and row). */
function downRowsOf(s: DecodeShape, t: DecodeTiles): {tm: number, rb: number} {
  const tm = Math.max(1, Math.min(s.T, Math.floor(t.downRows ?? 4)));
  return {tm, rb: Math.max(1, Math.min(tm, t.downKs, 4))};
}

/** Whether the down program runs per active expert, with the combine program after it (DecodeTiles.downByExpert). */
export function downRunsByExpert(s: DecodeShape, t: DecodeTiles): boolean {
  return t.downByExpert === true && s.downPacked != null && s.S === 0;
}

/** Shared memory of the largest of the other three programs (bytes). */
export function gemmSharedBytes(s: DecodeShape, t: DecodeTiles): number {
  return Math.max(Math.max(upReduceRows(s, t) * DECODE_THREADS, upStagedX(s, t)) * 16 + 16, DECODE_THREADS * 16 + 12 * s.K,
                  downRunsByExpert(s, t) ? downRowsOf(s, t).rb * DECODE_THREADS * 16 + 16 : 0);
}

/** The binding names of a routed weight: the float tensor, or the packed codes, scales and zero points. */
function weightBindings(packed: ExpertWeightLayout | null, float: string, prefix: string): string[] {
  if (packed == null) return [float];
  return [`${prefix}Packed`, ...(hasScales(packed.format) ? [`${prefix}Scales`] : []),
          ...(packed.zeroPoint ? [`${prefix}Zeros`] : [])];
}

/**
 * WGSL declarations of a routed weight's bindings: the float tensor as vec4, or the names the word decoders read
 * (packed, scales, zeros: vec4 of four columns; mxfp4 scales one word of four E8M0 bytes per vec4 column) and
 * the decoder's helper functions.
 */
function weightDecls(packed: ExpertWeightLayout | null, float: string, prefix: string, b: (n: string) => number,
                     options: WordDecoderOptions): string {
  if (packed == null) return `@group(0) @binding(${b(float)}) var<storage, read> ${float} : array<vec4<f32>>;`;
  const scales = packed.format === 'mxfp4' ? 'array<u32>' : 'array<vec4<f32>>';
  return `@group(0) @binding(${b(`${prefix}Packed`)}) var<storage, read> packed : array<vec4<u32>>;
  ${hasScales(packed.format) ? `@group(0) @binding(${b(`${prefix}Scales`)}) var<storage, read> scales : ${scales};` : ''}
  ${packed.zeroPoint ? `@group(0) @binding(${b(`${prefix}Zeros`)}) var<storage, read> zeros : array<vec4<f32>>;` : ''}
  ${wordDecoder(packed, options).snippet}`;
}

/** The word decoder's options of the tiles (both expert programs). */
function stepOptions(t: DecodeTiles): WordDecoderOptions {
  return {exponentBits: t.exponentBits, e2m1Half: t.e2m1Half, int4Half: t.int4Half, int4Unit: t.int4Unit};
}

/** Whether a packed stream along `depth` takes its steps unchecked (DecodeTiles.unchecked). */
function wholeSteps(packed: ExpertWeightLayout, depth: number, t: DecodeTiles): boolean {
  return t.unchecked === true && depth % (codesPerWord(packed.format) * STREAM_WORD_ROWS) === 0;
}

/** KB-steps of packed codes along a depth (STREAM_WORD_ROWS words of a column per step). */
function packedSteps(packed: ExpertWeightLayout, depth: number): number {
  return Math.ceil(depth / (codesPerWord(packed.format) * STREAM_WORD_ROWS));
}

/**
 * A packed stream over one expert's [K,N] codes: lane s takes steps s, s + KS, ... (packedStep; in scope: expert,
 * s, KS, TM, rows). `depth` K, `width4` N / 4 and `col` the vec4 column are WGSL expressions.
 */
function packedStream(packed: ExpertWeightLayout, depth: string, width4: string, col: string,
                      names: PackedStepNames, t: DecodeTiles, unroll: number, whole: boolean,
                      prefetchAsked: boolean | undefined, rowCases?: number): string {
  const prefetch = prefetchAsked === true && unroll === 1;
  const options = {...stepOptions(t), decodeOnce: t.decodeOnce, preloaded: prefetch, wholeSteps: whole, rowCases};
  const step = packedStep(packed, names, options);
  if (rowCases != null && t.decodeOnce === true && t.upRowLoops === true && !prefetch && unroll === 1) {
    // One stream loop per row count, picked once per pass (no branch inside the loop).
    const loop = (r: number) => `
          for (var step = s; step < steps; step += KS) {${packedStep(packed, names, {...options, rowCount: r})}
          }`;
    const cases = Array.from({length: rowCases}, (_, c) => c + 1);
    return `
        {${packedStepConsts(packed, depth)}
          let NV = ${width4};
          let K4 = (${depth}) / 4;
          let n = ${col};
          let wBase = expert * KW * NV + n;
          ${cases.map(r => r === rowCases ? `{${loop(r)}
          }` : `if (rows == ${r}) {${loop(r)}
          } else `).join('')}
        }`;
  }
  if (prefetch) {
    return `
        {${packedStepConsts(packed, depth)}
          let NV = ${width4};
          let K4 = (${depth}) / 4;
          let n = ${col};
          let wBase = expert * KW * NV + n;${packedWords('s * 4', 'wBase', 'nw')}
          for (var step = s; step < steps; step += KS) {
            ${Array.from({length: STREAM_WORD_ROWS}, (_, r) => `let c${r} = nw${r};`).join(' ')}${
            packedWords('(step + KS) * 4', 'wBase', 'nw', false)}${step}
          }
        }`;
  }
  // unroll > 1: that many steps per iteration of a loop with a constant inner bound (the compiler may interleave
  // their loads with the previous step's arithmetic).
  return `
        {${packedStepConsts(packed, depth)}
          let NV = ${width4};
          let K4 = (${depth}) / 4;
          let n = ${col};
          let wBase = expert * KW * NV + n;${unroll > 1 ? `
          for (var sb = s; sb < steps; sb += KS * ${unroll}) {
            for (var u = 0; u < ${unroll}; u++) {
              let step = sb + u * KS;
              if (step < steps) {${step}
              }
            }
          }` : `
          for (var step = s; step < steps; step += KS) {${step}
          }`}
        }`;
}

export function upGateDispatch(s: DecodeShape, t: DecodeTiles): number {
  const tilesE = Math.ceil(s.I / 4 / (t.upNv / 2));
  const tilesS = s.S > 0 ? Math.ceil(s.S / 4 / (t.upNv / 2)) : 0;
  return Math.min(s.E, s.T * s.K) * tilesE + tilesS;
}

export function downDispatch(s: DecodeShape, t: DecodeTiles): number {
  const tiles = Math.ceil(s.H / 4 / t.downNv);
  return downRunsByExpert(s, t) ? Math.min(s.E, s.T * s.K) * tiles : s.T * tiles;
}

/** The combine program after an expert-major down: one thread per (token, vec4 column). */
export function combineDispatch(s: DecodeShape): number {
  return Math.ceil(s.T * s.H / 4 / DECODE_THREADS);
}

export function routerDispatch(s: DecodeShape, t: DecodeTiles): number {
  const {hs, hsGate} = routerSplits(s, t);
  return (Math.ceil(s.E / 32) * hs + hsGate) * (t.routerVec4 === true ? 1 : routerTokenGroups(s, t));
}

const PRELUDE = `
  fn isnan(v : f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
  // NaN and infinity as runtime values (a const-expression may not evaluate to either).
  fn nanF32() -> f32 { var bits = 0x7fc00000u; return bitcast<f32>(bits); }
  fn infF32() -> f32 { var bits = 0x7f800000u; return bitcast<f32>(bits); }
`;

/** An f32 constant with its exact bits. */
function f32Const(v: number): string {
  const bits = new Uint32Array(new Float32Array([v]).buffer)[0];
  return `bitcast<f32>(${bits}u)`;
}

function layoutConsts(s: DecodeShape, t: DecodeTiles): string {
  const l = decodeLayout(s, t);
  return `
  const W_LOGITS = ${l.workLogits};
  const W_SLOTW = ${l.workSlotWeight};
  const W_SGATE = ${l.workSharedGate};
  const R_SLOT_EXPERT = ${l.routeSlotExpert};
  const R_SLOT_ROW = ${l.routeSlotRow};
  const R_ROW_SLOT = ${l.routeRowSlot};
  const R_NACT = ${l.routeNumActive};
  const R_ACT_EXPERT = ${l.routeActiveExpert};
  const R_ACT_START = ${l.routeActiveStart};
  const A_SHARED = ${l.actShared};`;
}

/** Program 1: partial router (and shared-gate) logits. Binding order: gate, work, [sharedGate]. */
export function routerLogitsCode(s: DecodeShape, t: DecodeTiles): string {
  const {hs, hsGate} = routerSplits(s, t);
  if (t.routerVec4 === true) return routerLogitsVec4Code(s, t, hs, hsGate);
  const ru = Math.max(1, Math.floor(t.routerUnroll ?? 1));
  const rr = routerReduceRows(s, t);
  const tg = routerTokenGroups(s, t);
  // Token groups: workgroup wid = w * TG + g takes tokens tb = g * TT .. of the split and columns of w (TT tokens
  // per workgroup; loads past T read token T - 1, their sums are not written).
  const TT = Math.ceil(s.T / tg);
  const xt = (t: string) => tg > 1 ? `min(tb + ${t}, T - 1)` : t;
  const staged = routerStagedRows(s, t);
  // x at token t and row h of the split (hu: the row step's unclamped row, below h1 wherever the value counts).
  const xAt = (t: string, h: string, hu = h) => staged > 0 ? `xs[${t} * ROWS + min(${hu} - h0, ROWS - 1)]` :
      `x[${xt(t)} * H + ${h}]`;
  return `${PRELUDE}${layoutConsts(s, t)}
  @group(0) @binding(0) var<storage, read> gate : array<f32>;
  @group(0) @binding(1) var<storage, read_write> work : array<f32>;
  ${s.sharedGate ? '@group(0) @binding(2) var<storage, read> sgate : array<f32>;' : ''}
  @group(1) @binding(0) var<storage, read> x : array<f32>;
  const T = ${s.T};
  const H = ${s.H};
  const E = ${s.E};
  const HS = ${hs};
  const HSG = ${Math.max(1, hsGate)};
  const CG = ${Math.ceil(s.E / 32)};
  const TT = ${TT};
  var<workgroup> red : array<f32, ${256 * rr}>;${staged > 0 ? `
  const ROWS = ${staged};
  var<workgroup> xs : array<f32, ${TT * staged}>;` : ''}

  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {${tg > 1 ? `
    let w = i32(wid.x) / ${tg};
    let tb = (i32(wid.x) % ${tg}) * TT;` : `
    let w = i32(wid.x);
    let tb = 0;`}
    let lid = i32(li);
    let cl = lid % 32;
    let hl = lid / 32;
    let isGate = w < CG * HS;
    var c = cl;
    var split = 0;
    var n = 1;
    var rows = (H + HSG - 1) / HSG;
    if (isGate) {
      c = (w / HS) * 32 + cl;
      split = w % HS;
      n = E;
      rows = (H + HS - 1) / HS;
    } else {
      split = w - CG * HS;
    }
    let h0 = split * rows;
    let h1 = min(H, h0 + rows);${staged > 0 ? `
    // One round of x loads for the workgroup (rows past h1 hold 0 and are never added).
    for (var i = lid; i < TT * ROWS; i += 256) {
      let h = h0 + i % ROWS;
      xs[i] = select(0.0, x[${xt('(i / ROWS)')} * H + min(h, H - 1)], h < h1);
    }
    workgroupBarrier();` : ''}
    var acc : array<f32, TT>;
    if (c < n) {${ru > 1 ? `
      // RU row steps' loads (router and x) before their FMAs; a step past h1 loads row H - 1 and adds nothing.
      for (var hb = h0 + hl; hb < h1; hb += 8 * ${ru}) {${Array.from({length: ru}, (_, u) => `
        let hu${u} = hb + ${8 * u};
        let hc${u} = min(hu${u}, H - 1);
        var wv${u} = 0.0;
        if (isGate) { wv${u} = gate[hc${u} * E + c]; } ${s.sharedGate ? `else { wv${u} = sgate[hc${u}]; }` : ''}`).join('')}
        for (var t = 0; t < TT; t++) {${Array.from({length: ru}, (_, u) => `
          let p${u} = ${xAt('t', `hc${u}`, `hu${u}`)} * wv${u};`).join('')}
          acc[t] += ${Array.from({length: ru}, (_, u) => `select(0.0, p${u}, hu${u} < h1)`).join(' + ')};
        }
      }` : `
      for (var h = h0 + hl; h < h1; h += 8) {
        var wv = 0.0;
        if (isGate) { wv = gate[h * E + c]; } ${s.sharedGate ? 'else { wv = sgate[h]; }' : ''}
        for (var t = 0; t < TT; t++) { acc[t] += ${xAt('t', 'h')} * wv; }
      }`}
    }${routerReduce(rr, 'acc')}
  }`;
}

/** Tokens per reduction round of routerLogits (DecodeTiles.routerReduceRows; at most its tokens per workgroup). */
function routerReduceRows(s: DecodeShape, t: DecodeTiles): number {
  return Math.max(1, Math.min(Math.ceil(s.T / routerTokenGroups(s, t)), Math.floor(t.routerReduceRows ?? 1), 16));
}

/**
 * Rows of the split routerLogits stages per token (DecodeTiles.routerStageX; the gate splits' rows, at least the
 * shared gate's), or 0 where not asked for or the staged rows would not fit beside the reduction's array in 16 KB.
 */
function routerStagedRows(s: DecodeShape, t: DecodeTiles): number {
  if (t.routerStageX !== true || t.routerVec4 === true) return 0;
  const {hs, hsGate} = routerSplits(s, t);
  const rows = Math.max(Math.ceil(s.H / hs), hsGate > 0 ? Math.ceil(s.H / hsGate) : 0);
  const tokens = Math.ceil(s.T / routerTokenGroups(s, t));
  return (tokens * rows + 256 * routerReduceRows(s, t)) * 4 <= 16384 ? rows : 0;
}

/** Workgroups per (split, column group) of routerLogits, each with its share of the tokens (routerTokenGroups). */
function routerTokenGroups(s: DecodeShape, t: DecodeTiles): number {
  return Math.max(1, Math.min(s.T, Math.floor(t.routerTokenGroups ?? 1)));
}

/**
 * routerLogits' end: the 8 row lanes' sums of each (token, column) through workgroup memory, RR tokens per barrier
 * pair; (token, column) sums spread over the threads, each adding its 8 lanes in lane order (the same sums whatever
 * RR). In scope: T, E, acc (array<f32, T>), lid, cl, hl, c, n, isGate, split.
 */
function routerReduce(rr: number, acc: string): string {
  if (rr === 1) {
    return `
    for (var t = 0; t < TT; t++) {
      red[lid] = ${acc}[t];
      workgroupBarrier();
      if (hl == 0 && c < n && tb + t < T) {
        var v = 0.0;
        for (var l = 0; l < 8; l++) { v += red[l * 32 + cl]; }
        if (isGate) { work[W_LOGITS + (split * T + tb + t) * E + c] = v; }
        else { work[W_SGATE + split * T + tb + t] = v; }
      }
      workgroupBarrier();
    }`;
  }
  return `
    let c0 = c - cl;
    for (var t0 = 0; t0 < TT; t0 += ${rr}) {
      for (var r = 0; r < ${rr}; r++) {
        if (t0 + r < TT) { red[r * 256 + lid] = ${acc}[t0 + r]; }
      }
      workgroupBarrier();
      for (var o = lid; o < ${rr * 32}; o += 256) {
        let r = o / 32;
        let col = o % 32;
        let t = t0 + r;
        if (t < TT && tb + t < T && c0 + col < n) {
          var v = 0.0;
          for (var l = 0; l < 8; l++) { v += red[r * 256 + l * 32 + col]; }
          if (isGate) { work[W_LOGITS + (split * T + tb + t) * E + c0 + col] = v; }
          else { work[W_SGATE + split * T + tb + t] = v; }
        }
      }
      workgroupBarrier();
    }`;
}

/** routerLogits with x read as vec4 (DecodeTiles.routerVec4): the same splits and partials, in quads of rows. */
function routerLogitsVec4Code(s: DecodeShape, t: DecodeTiles, hs: number, hsGate: number): string {
  return `${PRELUDE}${layoutConsts(s, t)}
  @group(0) @binding(0) var<storage, read> gate : array<f32>;
  @group(0) @binding(1) var<storage, read_write> work : array<f32>;
  ${s.sharedGate ? '@group(0) @binding(2) var<storage, read> sgate : array<vec4<f32>>;' : ''}
  @group(1) @binding(0) var<storage, read> x : array<vec4<f32>>;
  const T = ${s.T};
  const H4 = ${s.H / 4};
  const E = ${s.E};
  const HS = ${hs};
  const HSG = ${Math.max(1, hsGate)};
  const CG = ${Math.ceil(s.E / 32)};
  var<workgroup> red : array<f32, 256>;

  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let w = i32(wid.x);
    let lid = i32(li);
    let cl = lid % 32;
    let hl = lid / 32;
    let isGate = w < CG * HS;
    var c = cl;
    var split = 0;
    var n = 1;
    var quads = (H4 + HSG - 1) / HSG;
    if (isGate) {
      c = (w / HS) * 32 + cl;
      split = w % HS;
      n = E;
      quads = (H4 + HS - 1) / HS;
    } else {
      split = w - CG * HS;
    }
    let q0 = split * quads;
    let q1 = min(H4, q0 + quads);
    var acc : array<f32, T>;
    if (c < n) {
      for (var q = q0 + hl; q < q1; q += 8) {
        var wv = vec4<f32>(0.0);
        if (isGate) {
          let h = 4 * q * E + c;
          wv = vec4<f32>(gate[h], gate[h + E], gate[h + 2 * E], gate[h + 3 * E]);
        } ${s.sharedGate ? 'else { wv = sgate[q]; }' : ''}
        for (var t = 0; t < T; t++) { acc[t] += dot(x[t * H4 + q], wv); }
      }
    }
    for (var t = 0; t < T; t++) {
      red[lid] = acc[t];
      workgroupBarrier();
      if (hl == 0 && c < n) {
        var v = 0.0;
        for (var l = 0; l < 8; l++) { v += red[l * 32 + cl]; }
        if (isGate) { work[W_LOGITS + (split * T + t) * E + c] = v; }
        else { work[W_SGATE + split * T + t] = v; }
      }
      workgroupBarrier();
    }
  }`;
}

/** Program 2: routing and the counting sort, one workgroup. Binding order: work, route, [correctionBias]. */
export function routeCode(s: DecodeShape, t: DecodeTiles): string {
  const nt = Math.max(t.routeThreads ?? DECODE_THREADS, 1 << Math.ceil(Math.log2(s.T)));
  const sg = routeUsesSubgroups(s, t);
  const r = routeParts(s, t, 'route', f => `work[W_SLOTW + ${f}]`, nt, sg);
  return `${sg ? 'enable subgroups;\n  diagnostic(off, subgroup_uniformity);' : ''}${PRELUDE}${layoutConsts(s, t)}
  @group(0) @binding(0) var<storage, read_write> work : array<f32>;
  @group(0) @binding(1) var<storage, read_write> route : array<i32>;
  ${s.hasCorrectionBias ? '@group(0) @binding(2) var<storage, read> cbias : array<f32>;' : ''}
  const T = ${s.T};
  const K = ${s.K};
  ${r.decls}

  @compute @workgroup_size(${nt})
  fn main(@builtin(local_invocation_index) li : u32${sg ? `, @builtin(subgroup_invocation_id) sgLane : u32,
          @builtin(subgroup_size) sgSize : u32` : ''}) {
    let lid = i32(li);
    ${r.body}
  }`;
}

/**
 * The route program's declarations (module scope, T and K excluded) and body (needs `lid`), writing the route
 * layout into the array `routeOut` and slot f's weight into `slotWeight(f)` (the route program: the buffers; the
 * folded upGate program: workgroup arrays).
 */
function routeParts(s: DecodeShape, t: DecodeTiles, routeOut: string, slotWeight: (f: string) => string,
                    nt = DECODE_THREADS, subgroups = false): {decls: string, body: string} {
  const {hs} = routerSplits(s, t);
  const grouped = s.method === 'grouped';
  const G = s.nGroup, GK = s.topkGroup, GSIZE = Math.floor(s.E / s.nGroup);
  const bias = (e: string) => s.hasCorrectionBias ? `cbias[${e}]` : '0.0';
  const chunk = Math.ceil(s.E / nt);
  // Spread partial loads: r threads per logit, q loads each (written out; a loop where they would not fit).
  const r = Math.min(hs, Math.floor(nt / (s.T * s.E)));
  const spread = t.routeLoads === 'spread' && r >= 1 && Math.ceil(hs / r) <= 64 ? {r, q: Math.ceil(hs / r)} : null;
  // Spread with more logits than threads: every load of a thread's logits at once (where at most 256 of them).
  const chunkLogits = Math.ceil(s.T * s.E / nt);
  const allAtOnce = t.routeLoads === 'spread' && r < 1 && chunkLogits * hs <= 256;
  // Threads per token: a power of two, every token at once (with subgroups: within one subgroup).
  const tpt = Math.min(1 << Math.floor(Math.log2(nt / s.T)), t.routeLanes,
                       subgroups ? 1 << Math.floor(Math.log2(s.subgroupSize!)) : Infinity);
  const vpl = Math.ceil(s.E / tpt);
  // More candidates per lane than registers should hold: the rounds in workgroup memory instead.
  const keys = t.routeTopk === 'keys' && vpl <= MAX_KEY_CANDIDATES;
  const mask = t.routePlace === 'mask';
  // Butterfly over the token's lanes (xor partners stay within an aligned block of TPT subgroup lanes).
  const butterfly = (v: string, combine: (a: string, b: string) => string) =>
      Array.from({length: Math.log2(tpt)}, (_, i) => tpt >> (i + 1)).map(m => `
    ${v} = ${combine(v, `subgroupShuffleXor(${v}, ${m}u)`)};`).join('');
  const weight = grouped ?
      `${s.renormalize ? 'p / (total + 1e-20)' : 'p'} * ${f32Const(s.routedScalingFactor)}` :
      (s.renormalize ? 'p / max(total, 1e-12)' : 'p');
  const decls = `
  const E = ${s.E};
  const HS = ${hs};
  const G = ${G};
  const GK = ${GK};
  const GSIZE = ${GSIZE};
  const CHUNK = ${chunk};
  const NT = ${nt};
  const CH = ${Math.ceil(s.T * s.E / nt)};
  const TPT = ${tpt};
  const VPL = ${Math.ceil(s.E / tpt)};
  ${RANKING_SNIPPET}
  var<workgroup> redV : array<f32, NT>;
  var<workgroup> redI : array<i32, NT>;
  ${subgroups ? `// Reductions over the TPT lanes of each token (aligned blocks of subgroup lanes; every thread takes part):
  // the xor butterfly adds in the workgroup-memory tree's order (up to commutation), so the same bits.
  fn laneMax(v0 : f32, rl : i32) -> f32 {
    var v = v0;${butterfly('v', (a, b) => `max(${a}, ${b})`)}
    return v;
  }
  fn laneSum(v0 : f32, rl : i32) -> f32 {
    var v = v0;${butterfly('v', (a, b) => `${a} + ${b}`)}
    return v;
  }` : `// Reductions over the TPT lanes of each token (lanes are contiguous threads; every thread takes part).
  fn laneMax(v : f32, lid : i32) -> f32 {
    redV[lid] = v;
    workgroupBarrier();
    for (var st = TPT / 2; st > 0; st = st / 2) {
      if (lid % TPT < st) { redV[lid] = max(redV[lid], redV[lid + st]); }
      workgroupBarrier();
    }
    let r = redV[lid - lid % TPT];
    workgroupBarrier();
    return r;
  }
  fn laneSum(v : f32, lid : i32) -> f32 {
    redV[lid] = v;
    workgroupBarrier();
    for (var st = TPT / 2; st > 0; st = st / 2) {
      if (lid % TPT < st) { redV[lid] = redV[lid] + redV[lid + st]; }
      workgroupBarrier();
    }
    let r = redV[lid - lid % TPT];
    workgroupBarrier();
    return r;
  }`}
  ${keys ? `// An expert's place in ranksBefore's order as (key, expert): larger key first, then the smaller expert; NaN
  // after every number (key 0), -0 as +0; a candidate out of the race is (0, NOT_E), after every NaN.
  const NOT_E = 0xffffffffu;
  fn rankKey(v : f32) -> u32 {
    if (isnan(v)) { return 0u; }
    var b = bitcast<u32>(v);
    if (b == 0x80000000u) { b = 0u; }
    return select(~b, b | 0x80000000u, (b & 0x80000000u) == 0u);
  }
  fn better(a : vec2<u32>, b : vec2<u32>) -> vec2<u32> {
    return select(b, a, a.x > b.x || (a.x == b.x && a.y < b.y));
  }
  ${subgroups ? '' : 'var<workgroup> redK : array<vec2<u32>, NT>;'}` : ''}
  ${mask ? 'var<workgroup> tokMask : array<atomic<u32>, E>;' : ''}
  ${subgroups ? 'var<workgroup> subgroupCount : atomic<u32>;' : ''}
  var<workgroup> prob : array<f32, ${s.T * s.E}>;
  var<workgroup> sel : array<f32, ${s.T * s.E}>;
  var<workgroup> chosenE : array<i32, ${s.T * s.K}>;
  var<workgroup> chosenP : array<f32, ${s.T * s.K}>;
  var<workgroup> counts : array<atomic<i32>, E>;
  var<workgroup> offs : array<i32, E>;
  var<workgroup> scan : array<i32, NT>;
  var<workgroup> rowMax : array<f32, T>;
  var<workgroup> rowSum : array<f32, T>;
  var<workgroup> rowFlag : array<i32, T>;
  ${spread != null ? 'var<workgroup> partSum : array<f32, NT>;' : ''}
  ${grouped ? `var<workgroup> gscore : array<f32, ${s.T * G}>;
  var<workgroup> gkept : array<i32, ${s.T * G}>;` : ''}`;
  // Top-k 'keys': VPL candidates per lane in registers, a compare tree for the lane's best, then the lanes' best.
  const cands = Array.from({length: vpl}, (_, v) => v);
  const tree = (xs: string[]): string => xs.length === 1 ? xs[0] :
      `better(${tree(xs.slice(0, xs.length >> 1))}, ${tree(xs.slice(xs.length >> 1))})`;
  const keysTopk = `    // Top-k: k rounds of an arg-max over each token's TPT lanes, the lane's VPL candidates in registers.
    let outOfRace = vec2<u32>(0u, NOT_E);${cands.map(v => `
    var cand${v} = outOfRace;
    {
      let e = lane + ${v * tpt};
      // Experts of dropped groups never compete (not even against a kept NaN; docs/semantics.md 2.5).
      if (valid && e < E${grouped ? ' && gkept[tok * G + e / GSIZE] != 0' : ''}) { cand${v} = vec2<u32>(rankKey(sel[tok * E + e]), u32(e)); }
    }`).join('')}
    for (var j = 0; j < K; j++) {
      var best = ${tree(cands.map(v => `cand${v}`))};${subgroups ? butterfly('best', (a, b) => `better(${a}, ${b})`) : `
      redK[rl] = best;
      workgroupBarrier();
      for (var st = TPT / 2; st > 0; st = st / 2) {
        if (lane < st) { redK[rl] = better(redK[rl], redK[rl + st]); }
        workgroupBarrier();
      }
      best = redK[rl - lane];
      workgroupBarrier();`}${cands.map(v => `
      if (cand${v}.y == best.y) { cand${v} = outOfRace; }`).join('')}
      if (valid && lane == 0) {
        let win = select(i32(best.y), -1, best.y == NOT_E);
        chosenE[tok * K + j] = win;
        chosenP[tok * K + j] = prob[tok * E + max(win, 0)];
      }
    }
`;
  const body = `
    let inf = infF32();${subgroups ? `
    // This thread's place among the token lanes: its subgroup's index (taken in arrival order) and its lane there.
    var subgroupBase = 0u;
    if (subgroupElect()) { subgroupBase = atomicAdd(&subgroupCount, 1u); }
    subgroupBase = subgroupBroadcastFirst(subgroupBase);
    let rl = i32(subgroupBase * sgSize + sgLane);` : `
    let rl = lid;`}
    let tok = rl / TPT;
    let lane = rl % TPT;
    let valid = tok < T;
${spread == null && allAtOnce ? `    // The router's partial sums, more logits than threads: each thread's CH x HS loads written out (one load
    // latency), then added in split order.
    {${Array.from({length: chunkLogits}, (_, c) => `
      let i${c} = min(lid + ${c * nt}, T * E - 1);${Array.from({length: hs}, (_, p) => `
      let v${c}_${p} = work[W_LOGITS + ${p * s.T * s.E} + i${c}];`).join('')}`).join('')}${
      Array.from({length: chunkLogits}, (_, c) => `
      if (lid + ${c * nt} < T * E) { prob[i${c}] = ${Array.from({length: hs}, (_, p) => `v${c}_${p}`).join(' + ')}; }`).join('')}
    }` : spread == null ? `    // The router's partial sums: split-outer, so each thread has CH independent loads in flight per split.
    var part = array<f32, CH>();
    for (var p = 0; p < HS; p++) {
      for (var c = 0; c < CH; c++) {
        let i = lid + c * NT;
        if (i < T * E) { part[c] += work[W_LOGITS + p * T * E + i]; }
      }
    }
    for (var c = 0; c < CH; c++) {
      let i = lid + c * NT;
      if (i < T * E) { prob[i] = part[c]; }
    }` : `    // The router's partial sums spread: SR threads per logit, each loading splits g, g + SR, ... (written out:
    // one load latency), then the SR sums added in workgroup memory.
    {
      let o = lid % (T * E);
      let g = lid / (T * E);
      var v = 0.0;
      if (g < ${spread.r}) {${Array.from({length: spread.q}, (_, q) => `
        let v${q} = select(0.0, work[W_LOGITS + min(g + ${q * spread.r}, HS - 1) * T * E + o], g + ${q * spread.r} < HS);`).join('')}
        v = ${Array.from({length: spread.q}, (_, q) => `v${q}`).join(' + ')};
      }
      partSum[lid] = v;
    }
    workgroupBarrier();
    for (var i = lid; i < T * E; i += NT) {
      var sum = 0.0;
      for (var g = 0; g < ${spread.r}; g++) { sum += partSum[g * T * E + i]; }
      prob[i] = sum;
    }`}
    for (var e = lid; e < E; e += NT) { atomicStore(&counts[e], 0);${mask ? ' atomicStore(&tokMask[e], 0u);' : ''} }
    workgroupBarrier();
    ${grouped ? `
    for (var i = lid; i < T * E; i += NT) {
      let e = i % E;
      let l = prob[i];
      // exp() need not propagate NaN on every GPU: keep NaN logits NaN explicitly.
      let sc = select(1.0 / (1.0 + exp(-l)), nanF32(), isnan(l));
      prob[i] = sc;
      sel[i] = sc + ${bias('e')};
    }
    workgroupBarrier();
    for (var q = lid; q < T * G; q += NT) {
      let t = q / G;
      let g = q - t * G;
      var v0 = 0.0; var i0 = -1; var v1 = 0.0; var i1 = -1;
      for (var m = 0; m < GSIZE; m++) {
        let e = g * GSIZE + m;
        let v = sel[t * E + e];
        if (ranksBefore(v, e, v0, i0)) { v1 = v0; i1 = i0; v0 = v; i0 = e; }
        else if (ranksBefore(v, e, v1, i1)) { v1 = v; i1 = e; }
      }
      gscore[q] = select(v0 + v1, v0, GSIZE == 1);
    }
    workgroupBarrier();
    for (var q = lid; q < T * G; q += NT) {
      let t = q / G;
      let g = q - t * G;
      var rank = 0;
      for (var g2 = 0; g2 < G; g2++) {
        if (ranksBefore(gscore[t * G + g2], g2, gscore[q], g)) { rank++; }
      }
      gkept[q] = select(0, 1, rank < GK);
    }
    for (var t = lid; t < T; t += NT) {
      var anyFinite = false;
      for (var g = 0; g < G; g++) { if (isFiniteF32(gscore[t * G + g])) { anyFinite = true; } }
      rowFlag[t] = select(1, 0, anyFinite);
    }
    workgroupBarrier();` : `
    // Row max, NaN flag and exp-sum, each token's TPT lanes reducing together.
    var m = -inf;
    var nan = 0.0;
    for (var v = 0; v < VPL; v++) {
      let e = lane + v * TPT;
      if (valid && e < E) {
        let l = prob[tok * E + e];
        if (isnan(l)) { nan = 1.0; } else { m = max(m, l); }
      }
    }
    m = laneMax(m, rl);
    nan = laneMax(nan, rl);
    var sum = 0.0;
    for (var v = 0; v < VPL; v++) {
      let e = lane + v * TPT;
      if (valid && e < E) { sum += exp(prob[tok * E + e] - m); }
    }
    sum = laneSum(sum, rl);
    if (valid && lane == 0) {
      rowMax[tok] = m;
      rowSum[tok] = sum;
      // A NaN logit or an infinite row maximum makes the row NaN (docs/semantics.md 1).
      rowFlag[tok] = select(0, 1, nan > 0.0 || !isFiniteF32(m));
    }
    workgroupBarrier();
    for (var i = lid; i < T * E; i += NT) {
      let t = i / E;
      let e = i - t * E;
      // A NaN logit makes every probability of its row NaN (as the max and the sum are).
      let p = select(exp(prob[i] - rowMax[t]) / rowSum[t], nanF32(), rowFlag[t] != 0);
      sel[i] = p + ${bias('e')};
      prob[i] = p;
    }
    workgroupBarrier();`}
${t.routeTopk === 'rank' ? `    // Top-k by rank: each (token, expert) counts the experts ranking before it (one barrier, no rounds); the
    // first K ranks are the slots in order. Experts of dropped groups never compete (docs/semantics.md 2.5).
    for (var i = lid; i < T * E; i += NT) {
      let t = i / E;
      let e = i - t * E;
      if (${grouped ? 'gkept[t * G + e / GSIZE] != 0' : 'true'}) {
        let v = sel[i];
        var rank = 0;
        for (var e2 = 0; e2 < E; e2++) {
          if (${grouped ? 'gkept[t * G + e2 / GSIZE] != 0 && ' : ''}ranksBefore(sel[t * E + e2], e2, v, e)) {
            rank++;
            if (rank >= K) { break; }
          }
        }
        if (rank < K) {
          chosenE[t * K + rank] = e;
          chosenP[t * K + rank] = prob[i];
        }
      }
    }
` : keys ? keysTopk : `    // Top-k: k rounds of an arg-max over each token's TPT lanes (VPL experts per lane).
    var taken = array<bool, VPL>();
    for (var j = 0; j < K; j++) {
      var bv = 0.0;
      var bi = -1;
      for (var v = 0; v < VPL; v++) {
        let e = lane + v * TPT;
        // Experts of dropped groups never compete (not even against a kept NaN; docs/semantics.md 2.5).
        if (valid && e < E && !taken[v] && ${grouped ? 'gkept[tok * G + e / GSIZE] != 0 && ' : ''}
            ranksBefore(sel[tok * E + e], e, bv, bi)) {
          bv = sel[tok * E + e];
          bi = e;
        }
      }
      redV[rl] = bv;
      redI[rl] = bi;
      workgroupBarrier();
      for (var st = TPT / 2; st > 0; st = st / 2) {
        if (lane < st && ranksBefore(redV[rl + st], redI[rl + st], redV[rl], redI[rl])) {
          redV[rl] = redV[rl + st];
          redI[rl] = redI[rl + st];
        }
        workgroupBarrier();
      }
      let win = redI[rl - lane];
      workgroupBarrier();
      for (var v = 0; v < VPL; v++) { if (lane + v * TPT == win) { taken[v] = true; } }
      if (valid && lane == 0) {
        chosenE[tok * K + j] = win;
        chosenP[tok * K + j] = prob[tok * E + win];
      }
    }
`}    workgroupBarrier();
    for (var f = lid; f < T * K; f += NT) {
      let t = f / K;
      var total = 0.0;
      for (var m = 0; m < K; m++) { total += chosenP[t * K + m]; }
      let p = chosenP[f];
      var w = ${weight};
      var e = chosenE[f];
      ${grouped ? `if (rowFlag[t] != 0) { e = f - t * K; w = 1.0 / f32(K); }` : ''}
      chosenE[f] = e;
      work[W_SLOTW + f] = w;
      route[R_SLOT_EXPERT + f] = e;
      atomicAdd(&counts[e], 1);${mask ? `
      atomicOr(&tokMask[e], 1u << u32(t));` : ''}
    }
    workgroupBarrier();
    // Exclusive scan of (count | active << 16): row offsets and the index of each active expert.
    var local = 0;
    for (var q = 0; q < CHUNK; q++) {
      let e = lid * CHUNK + q;
      if (e < E) { let c = atomicLoad(&counts[e]); local += c | (min(c, 1) << 16); }
    }
    scan[lid] = local;
    workgroupBarrier();
    for (var st = 1; st < NT; st = st * 2) {
      var add = 0;
      if (lid >= st) { add = scan[lid - st]; }
      workgroupBarrier();
      scan[lid] += add;
      workgroupBarrier();
    }
    var run = scan[lid] - local;
    for (var q = 0; q < CHUNK; q++) {
      let e = lid * CHUNK + q;
      if (e < E) {
        let c = atomicLoad(&counts[e]);
        offs[e] = run & 0xffff;
        if (c > 0) {
          let a = run >> 16;
          route[R_ACT_EXPERT + a] = e;
          route[R_ACT_START + a] = run & 0xffff;
        }
        run += c | (min(c, 1) << 16);
      }
    }
    if (lid == NT - 1) {
      let numActive = scan[NT - 1] >> 16;
      route[R_NACT] = numActive;
      route[R_ACT_START + numActive] = T * K;
    }
    workgroupBarrier();
    // Stable placement: rows of an expert in (token, slot) order.
    for (var f = lid; f < T * K; f += NT) {
      let e = chosenE[f];
      var r = offs[e];${mask ? `
      // A token's slots hold distinct experts: the expert's earlier rows are its earlier tokens'.
      r += i32(countOneBits(atomicLoad(&tokMask[e]) & ((1u << u32(f / K)) - 1u)));` : `
      for (var f2 = 0; f2 < f; f2++) { if (chosenE[f2] == e) { r++; } }`}
      route[R_SLOT_ROW + f] = r;
      route[R_ROW_SLOT + r] = f;
    }`;
  return {decls, body: body.replace(/\broute\[/g, `${routeOut}[`).replace(/work\[W_SLOTW \+ f\]/g, slotWeight('f'))};
}

/**
 * Program 3 binding order: upGate (or its packed parts), route, act, [upBias], [work (probInAdvance)], [sharedUpGate]; folded (it routes
 * too): upGate, route, act, [upBias], work, [sharedUpGate], [correctionBias].
 */
export function upGateBindings(s: DecodeShape, fold = false): string[] {
  return [...weightBindings(s.upPacked, 'upGate', 'up'), 'route', 'act', ...(s.withBias ? ['upBias'] : []), ...(s.probInAdvance || fold ? ['work'] : []),
          ...(s.S > 0 ? ['sharedUpGate'] : []), ...(fold && s.hasCorrectionBias ? ['cbias'] : [])];
}

/** Workgroup memory the folded upGate program needs (bytes): its own, the route program's and the route layout. */
export function foldedSharedBytes(s: DecodeShape, t: DecodeTiles): number {
  return gemmSharedBytes(s, t) + routeSharedBytes(s) + 4 * (decodeLayout(s, t).routeSize + s.T * s.K);
}

export function upGateCode(s: DecodeShape, t: DecodeTiles, fold = false): string {
  const names = upGateBindings(s, fold);
  // Folded, the route layout and the slot weights live in workgroup memory (every workgroup routes for itself).
  const routeIn = fold ? 'routeL' : 'route';
  const routed = fold ? routeParts(s, t, 'routeL', f => `slotWL[${f}]`) : null;
  const l = decodeLayout(s, t);
  const b = (n: string) => names.indexOf(n);
  const NVW = t.upNv, KS = t.upKs;
  const TM = Math.min(s.T, t.upRows);
  const RB = upReduceRows(s, t);
  const I4 = s.I / 4, S4 = s.S / 4, H4 = s.H / 4;
  const tilesE = Math.ceil(I4 / (NVW / 2));
  const maxActive = Math.min(s.E, s.T * s.K);
  // The streaming loop, once per weight binding (WGSL has no storage pointers as arguments).
  const UU = Math.max(1, Math.floor(t.upUnroll ?? 1));
  // U k-steps' loads before their FMAs (a step past H4 loads a valid address and adds nothing).
  const unrolled = (buf: string, base: string, width: string) => {
    const us = Array.from({length: UU}, (_, u) => u);
    return `
        for (var kb = s; kb < H4; kb += KS * ${UU}) {${us.map(u => `
          let k${u} = kb + ${u} * KS;
          let wi${u} = ${base} + min(k${u}, H4 - 1) * 4 * ${width} + n4;
          let w${u}0 = ${buf}[wi${u}];
          let w${u}1 = ${buf}[wi${u} + ${width}];
          let w${u}2 = ${buf}[wi${u} + 2 * ${width}];
          let w${u}3 = ${buf}[wi${u} + 3 * ${width}];`).join('')}
          for (var i = 0; i < TM; i++) {
            if (i < rows) {${us.map(u => `
              if (k${u} < H4) {
                let a = x[tok[i] * H4 + k${u}];
                acc[i] += a.x * w${u}0 + a.y * w${u}1 + a.z * w${u}2 + a.w * w${u}3;
              }`).join('')}
            }
          }
        }`;
  };
  const stream = (buf: string, base: string, n4: string) => UU > 1 ? unrolled(buf, base, n4) : `
        for (var k4 = s; k4 < H4; k4 += KS) {
          let wi = ${base} + k4 * 4 * ${n4} + n4;
          let w0 = ${buf}[wi];
          let w1 = ${buf}[wi + ${n4}];
          let w2 = ${buf}[wi + 2 * ${n4}];
          let w3 = ${buf}[wi + 3 * ${n4}];
          for (var i = 0; i < TM; i++) {
            if (i < rows) {
              let a = x[tok[i] * H4 + k4];
              acc[i] += a.x * w0 + a.y * w1 + a.z * w2 + a.w * w3;
            }
          }
        }`;
  const staged = upStagedX(s, t);
  const routedStream = s.upPacked == null ? stream('upGate', 'expert * H4 * 4 * (2 * I4)', '(2 * I4)') :
      packedStream(s.upPacked, 'H4 * 4', '2 * I4', 'n4',
                   {lhs: staged > 0 ? 'red' : 'x', lhsRow: i => staged > 0 ? i : `tok[${i}]`,
                    accumulate: (i, v) => `acc[${i}] += ${v};`}, t, UU,
                   wholeSteps(s.upPacked, s.H, t), t.upPrefetch, t.upRowCases === true ? TM : undefined);
  return `${PRELUDE}${layoutConsts(s, t)}
  ${weightDecls(s.upPacked, 'upGate', 'up', b, stepOptions(t))}
  @group(0) @binding(${b('route')}) var<storage, read_write> route : array<i32>;
  @group(0) @binding(${b('act')}) var<storage, read_write> act : array<vec4<f32>>;
  ${s.withBias ? `@group(0) @binding(${b('upBias')}) var<storage, read> upBias : array<vec4<f32>>;` : ''}
  ${s.probInAdvance || fold ? `@group(0) @binding(${b('work')}) var<storage, read_write> work : array<f32>;` : ''}
  ${s.S > 0 ? `@group(0) @binding(${b('sharedUpGate')}) var<storage, read> sharedUpGate : array<vec4<f32>>;` : ''}
  ${fold && s.hasCorrectionBias ? `@group(0) @binding(${b('cbias')}) var<storage, read> cbias : array<f32>;` : ''}
  @group(1) @binding(0) var<storage, read> x : array<vec4<f32>>;
  const T = ${s.T};
  const K = ${s.K};
  ${routed == null ? '' : `${routed.decls}
  const ROUTE_SIZE = ${l.routeSize};
  var<workgroup> routeL : array<i32, ${l.routeSize}>;
  var<workgroup> slotWL : array<f32, ${s.T * s.K}>;
  fn routeAll(lid : i32) {${routed.body}
  }`}
  const H4 = ${H4};
  const I4 = ${I4};
  const S4 = ${Math.max(1, S4)};
  const NVW = ${NVW};
  const KS = ${KS};
  const TM = ${TM};
  const RB = ${RB};
  const TILES_E = ${tilesE};
  const EXPERT_WGS = ${maxActive * tilesE};
  var<workgroup> unitInfo : array<i32, 4>;
  var<workgroup> red : array<vec4<f32>, ${Math.max(RB * 256, staged)}>;
  fn silu4(g : vec4<f32>) -> vec4<f32> { return g / (vec4<f32>(1.0) + exp(-g)); }

  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let w = i32(wid.x);
    let lid = i32(li);
    let isShared = w >= EXPERT_WGS;
    var unit = w / TILES_E;
    var colTile = w % TILES_E;
    var half4 = I4;
    if (isShared) { unit = 0; colTile = w - EXPERT_WGS; half4 = S4; }${routed == null ? '' : `
    routeAll(lid);
    workgroupBarrier();
    // The down program (the next dispatch) reads workgroup 0's copy; no workgroup here reads it.
    if (w == 0) {
      for (var i = lid; i < ROUTE_SIZE; i += 256) { route[i] = routeL[i]; }
      for (var f = lid; f < T * K; f += 256) { work[W_SLOTW + f] = slotWL[f]; }
    }`}
    if (lid == 0) {
      unitInfo[0] = 0; unitInfo[1] = 0; unitInfo[2] = 0; unitInfo[3] = 0;
      if (isShared) {
        unitInfo[0] = 1; unitInfo[3] = T;
      }${t.upInfoAtOnce === true ? ` else {
        // All four loads issued before the count is known (one round trip; unit < the most active units, so in
        // bounds), kept by the selects.
        let na = ${routeIn}[R_NACT];
        let ue = ${routeIn}[R_ACT_EXPERT + unit];
        let u0 = ${routeIn}[R_ACT_START + unit];
        let u1 = ${routeIn}[R_ACT_START + unit + 1];
        let on = unit < na;
        unitInfo[0] = select(0, 1, on);
        unitInfo[1] = select(0, ue, on);
        unitInfo[2] = select(0, u0, on);
        unitInfo[3] = select(0, u1, on);
      }` : ` else if (unit < ${routeIn}[R_NACT]) {
        unitInfo[0] = 1;
        unitInfo[1] = ${routeIn}[R_ACT_EXPERT + unit];
        unitInfo[2] = ${routeIn}[R_ACT_START + unit];
        unitInfo[3] = ${routeIn}[R_ACT_START + unit + 1];
      }`}
    }
    let m = workgroupUniformLoad(&unitInfo);
    let expert = m[1];
    let rowStart = m[2];
    let rowEnd = m[3];
    let cl = lid % NVW;
    let s = lid / NVW;
    let logical = colTile * (NVW / 2) + cl % (NVW / 2);
    let colOk = logical < half4;
    let n4 = select(logical, half4 + logical, cl >= NVW / 2);
    for (var r0 = rowStart; r0 < rowEnd; r0 += TM) {
      let rows = min(TM, rowEnd - r0);
      var tok = array<i32, TM>();
      for (var i = 0; i < TM; i++) {
        if (i < rows) { tok[i] = select(${routeIn}[R_ROW_SLOT + r0 + i] / K, r0 + i, isShared); }
      }
      // Explicitly zeroed: a declaration in a loop body was seen to keep the previous iteration's values.
      var acc = array<vec4<f32>, TM>();${staged > 0 ? `
      // The rows of x into red (the previous pass's reduction ended with a barrier).
      for (var v = lid; v < TM * H4; v += 256) {
        let i = v / H4;
        if (i < rows) { red[v] = x[tok[i] * H4 + v % H4]; }
      }
      workgroupBarrier();` : ''}
      if (colOk) {
        if (isShared) {${s.S > 0 ? stream('sharedUpGate', '0', '(2 * S4)') : ''}
        } else {${routedStream}
        }
      }${staged > 0 ? `
      workgroupBarrier();` : ''}
      for (var i0 = 0; i0 < rows; i0 += RB) {
        for (var q = 0; q < RB; q++) {
          if (i0 + q < rows) { red[q * 256 + lid] = acc[i0 + q]; }
        }
        workgroupBarrier();
        let q = lid / (NVW / 2);
        let c = lid % (NVW / 2);
        let lg = colTile * (NVW / 2) + c;
        if (q < RB && i0 + q < rows && lg < half4) {
          var g = vec4<f32>(0.0);
          var u = vec4<f32>(0.0);
          for (var k = 0; k < KS; k++) {
            g += red[q * 256 + k * NVW + c];
            u += red[q * 256 + k * NVW + NVW / 2 + c];
          }
          let r = r0 + i0 + q;
          if (isShared) {
            act[A_SHARED + r * S4 + lg] = silu4(g) * u;
          } else {
            ${s.withBias ? 'g += upBias[expert * 2 * I4 + lg]; u += upBias[expert * 2 * I4 + I4 + lg];' : ''}
            act[r * I4 + lg] = silu4(g) * u${!s.probInAdvance ? '' : fold ? ' * slotWL[routeL[R_ROW_SLOT + r]]' :
                ' * work[W_SLOTW + route[R_ROW_SLOT + r]]'};
          }
        }
        workgroupBarrier();
      }
    }
  }`;
}

/** Program 4 binding order: down (or its packed parts), route, act, work, [downBias], [sharedDown]. */
export function downBindings(s: DecodeShape): string[] {
  return [...weightBindings(s.downPacked, 'down', 'down'), 'route', 'act', 'work', ...(s.withBias ? ['downBias'] : []),
          ...(s.S > 0 ? ['sharedDown'] : [])];
}

/** Whether the down program's k-lanes take (contributor, k-step) items (DecodeTiles.downFlat). */
function downTakesItems(s: DecodeShape, t: DecodeTiles): boolean {
  return t.downFlat === true || s.downPacked != null;
}

export function downCode(s: DecodeShape, t: DecodeTiles): string {
  const names = downBindings(s);
  const b = (n: string) => names.indexOf(n);
  const {hsGate} = routerSplits(s, t);
  const NVW = t.downNv, KS = t.downKs;
  const H4 = s.H / 4, I4 = s.I / 4, S4 = s.S / 4;
  const items = downTakesItems(s, t);
  const U = Math.max(1, Math.floor(t.downUnroll ?? 1));
  const stream = (buf: string, base: string, actBase: string, len: string, scale: string) => `
        for (var i4 = s; i4 < ${len}; i4 += KS) {
          let a = act[${actBase} + i4] * ${scale};
          let wi = ${base} + i4 * 4 * H4 + c4;
          acc += a.x * ${buf}[wi] + a.y * ${buf}[wi + H4] + a.z * ${buf}[wi + 2 * H4] + a.w * ${buf}[wi + 3 * H4];
        }`;
  // Items q = (contributor j, k-step) of the token's TOPK contributors, q = s, s + KS, ...: every lane the same
  // count whatever K and the steps per contributor. Float weights: U items' loads before their FMAs.
  const floatItems = () => {
    const one = (u: number) => `
          let q${u} = q0 + ${u} * KS;
          let in${u} = q${u} < TOPK * STEPS;
          let j${u} = select(0, q${u} / STEPS, in${u});
          let i${u} = select(0, q${u} - j${u} * STEPS, in${u});
          let a${u} = select(vec4<f32>(0.0), act[slotR[j${u}] * I4 + i${u}] * slotW[j${u}], in${u});
          let wi${u} = (slotE[j${u}] * I4 + i${u}) * 4 * H4 + c4;
          let w${u}0 = down[wi${u}];
          let w${u}1 = down[wi${u} + H4];
          let w${u}2 = down[wi${u} + 2 * H4];
          let w${u}3 = down[wi${u} + 3 * H4];`;
    const fma = (u: number) => `
          acc += a${u}.x * w${u}0 + a${u}.y * w${u}1 + a${u}.z * w${u}2 + a${u}.w * w${u}3;`;
    const us = Array.from({length: U}, (_, u) => u);
    return `
        const STEPS = I4;
        for (var q0 = s; q0 < TOPK * STEPS; q0 += KS * ${U}) {${us.map(one).join('')}${us.map(fma).join('')}
        }`;
  };
  const prefetch = t.downPrefetch === true && U === 1;
  // Item qn's words into nw0.. (prefetch; past the last item they stay: no step reads them).
  const itemWords = (qn: string) => `
          {
            let qn = ${qn};
            if (qn < TOPK * steps) {
              let jn = qn / steps;
              let wn = slotE[jn] * KW * NV + n;${packedWords('(qn - jn * steps) * 4', 'wn', 'nw', false)}
            }
          }`;
  const packedItems = (l: ExpertWeightLayout) => `
        {${packedStepConsts(l, 'I4 * 4')}
          let NV = H4;
          let K4 = I4;
          let n = c4;
          let rows = 1;${prefetch ? `
          ${Array.from({length: STREAM_WORD_ROWS}, (_, r) => `var nw${r} = vec4<u32>(0u);`).join(' ')}${itemWords('s')}
          for (var q = s; q < TOPK * steps; q += KS) {
            ${Array.from({length: STREAM_WORD_ROWS}, (_, r) => `let c${r} = nw${r};`).join(' ')}${itemWords('q + KS')}${
            packedItem(l)}
          }` : U > 1 ? `
          for (var q0 = s; q0 < TOPK * steps; q0 += KS * ${U}) {
            for (var u = 0; u < ${U}; u++) {
              let q = q0 + u * KS;
              if (q < TOPK * steps) {${packedItem(l)}
              }
            }
          }` : `
          for (var q = s; q < TOPK * steps; q += KS) {${packedItem(l)}
          }`}
        }`;
  const packedItem = (l: ExpertWeightLayout) => `
            let j = q / steps;
            let step = q - j * steps;
            let expert = slotE[j];
            let rowD = slotR[j];
            let wt = slotW[j];
            let wBase = expert * KW * NV + n;${packedStep(l, {lhs: 'act', lhsRow: () => 'rowD',
                                                                accumulate: (_, v) => `acc += ${v} * wt;`},
                                                          {...stepOptions(t), preloaded: prefetch,
                                                           wholeSteps: wholeSteps(l, s.I, t)})}`;
  const routed = s.downPacked != null ? packedItems(s.downPacked) : items ? floatItems() : `
      for (var j = 0; j < TOPK; j++) {
        let e = slotE[j];
        let r = slotR[j];
        let wt = slotW[j];
        ${stream('down', 'e * I4 * 4 * H4', 'r * I4', 'I4', 'wt')}
      }`;
  return `${PRELUDE}${layoutConsts(s, t)}
  ${weightDecls(s.downPacked, 'down', 'down', b, stepOptions(t))}
  @group(0) @binding(${b('route')}) var<storage, read_write> route : array<i32>;
  @group(0) @binding(${b('act')}) var<storage, read_write> act : array<vec4<f32>>;
  @group(0) @binding(${b('work')}) var<storage, read_write> work : array<f32>;
  ${s.withBias ? `@group(0) @binding(${b('downBias')}) var<storage, read> downBias : array<vec4<f32>>;` : ''}
  ${s.S > 0 ? `@group(0) @binding(${b('sharedDown')}) var<storage, read> sharedDown : array<vec4<f32>>;` : ''}
  @group(1) @binding(1) var<storage, read_write> out : array<vec4<f32>>;
  const T = ${s.T};
  const TOPK = ${s.K};
  const H4 = ${H4};
  const I4 = ${I4};
  const S4 = ${Math.max(1, S4)};
  const NVW = ${NVW};
  const KS = ${KS};
  const TM = 1;
  const TILES = ${Math.ceil(H4 / NVW)};
  const HSG = ${Math.max(1, hsGate)};
  var<workgroup> red : array<vec4<f32>, 256>;
  // The token's contributors: expert, activation row and weight (1 with probInAdvance: applied in upGate).
  var<workgroup> slotE : array<i32, TOPK>;
  var<workgroup> slotR : array<i32, TOPK>;
  var<workgroup> slotW : array<f32, TOPK>;

  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let w = i32(wid.x);
    let lid = i32(li);
    ${t.downTileMajor === true ? `// Column tile major: the tokens of one column tile run side by side, so the tokens routed to one expert
    // read the same codes about together (L2 hits instead of a read per token).
    let t = w % T;
    let c4 = (w / T) * NVW + lid % NVW;` : `let t = w / TILES;
    let c4 = (w % TILES) * NVW + lid % NVW;`}
    let cl = lid % NVW;
    let s = lid / NVW;
    let ok = c4 < H4;
    for (var j = lid; j < TOPK; j += 256) {
      let f = t * TOPK + j;
      slotE[j] = route[R_SLOT_EXPERT + f];
      slotR[j] = route[R_SLOT_ROW + f];
      slotW[j] = ${s.probInAdvance ? '1.0' : 'work[W_SLOTW + f]'};
    }
    workgroupBarrier();
    var acc = vec4<f32>(0.0);
    if (ok) {${routed}
      ${s.S > 0 ? `
      var g = 1.0;
      ${s.sharedGate ? `
      var z = 0.0;
      for (var p = 0; p < HSG; p++) { z += work[W_SGATE + p * T + t]; }
      g = 1.0 / (1.0 + exp(-z));` : ''}
      ${stream('sharedDown', '0', 'A_SHARED + t * S4', 'S4', 'g')}` : ''}
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var st = KS / 2; st > 0; st = st / 2) {
      if (s < st) { red[lid] += red[lid + st * NVW]; }
      workgroupBarrier();
    }
    if (s == 0 && ok) {
      var v = red[cl];
      ${s.withBias ? `
      for (var j = 0; j < TOPK; j++) {
        let f = t * TOPK + j;
        v += work[W_SLOTW + f] * downBias[slotE[j] * H4 + c4];
      }` : ''}
      out[t * H4 + c4] = v;
    }
  }`;
}


/** Expert-major down program binding order: down's packed parts, route, act, part (at most 6: within 8 with group 1). */
export function downExpertBindings(s: DecodeShape): string[] {
  return [...weightBindings(s.downPacked, 'down', 'down'), 'route', 'act', 'part'];
}

/**
 * Program 4 per active expert (DecodeTiles.downByExpert): workgroup (unit, column tile) streams the unit's packed
 * [I, H] codes once for up to TM of its rows (each quad decoded once for them all), the k-lanes' sums reduced in
 * workgroup memory, and writes row r's vec4s to part[r * H4 + c4] (the combine program weights them).
 */
export function downExpertCode(s: DecodeShape, t: DecodeTiles): string {
  const l = s.downPacked!;
  const names = downExpertBindings(s);
  const b = (n: string) => names.indexOf(n);
  const NVW = t.downNv, KS = t.downKs;
  const H4 = s.H / 4, I4 = s.I / 4;
  const {tm, rb} = downRowsOf(s, t);
  const tiles = Math.ceil(H4 / NVW);
  return `${PRELUDE}${layoutConsts(s, t)}
  ${weightDecls(l, 'down', 'down', b, stepOptions(t))}
  @group(0) @binding(${b('route')}) var<storage, read_write> route : array<i32>;
  @group(0) @binding(${b('act')}) var<storage, read_write> act : array<vec4<f32>>;
  @group(0) @binding(${b('part')}) var<storage, read_write> part : array<vec4<f32>>;
  const T = ${s.T};
  const K = ${s.K};
  const H4 = ${H4};
  const I4 = ${I4};
  const NVW = ${NVW};
  const KS = ${KS};
  const TM = ${tm};
  const RB = ${rb};
  const TILES = ${tiles};
  var<workgroup> unitInfo : array<i32, 4>;
  var<workgroup> red : array<vec4<f32>, ${rb * 256}>;

  @compute @workgroup_size(256)
  fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) li : u32) {
    let w = i32(wid.x);
    let lid = i32(li);
    let unit = w / TILES;
    let colTile = w % TILES;
    if (lid == 0) {
      unitInfo[0] = 0; unitInfo[1] = 0; unitInfo[2] = 0; unitInfo[3] = 0;
      if (unit < route[R_NACT]) {
        unitInfo[1] = route[R_ACT_EXPERT + unit];
        unitInfo[2] = route[R_ACT_START + unit];
        unitInfo[3] = route[R_ACT_START + unit + 1];
      }
    }
    let m = workgroupUniformLoad(&unitInfo);
    let expert = m[1];
    let rowStart = m[2];
    let rowEnd = m[3];
    let cl = lid % NVW;
    let s = lid / NVW;
    let c4 = colTile * NVW + cl;
    let colOk = c4 < H4;
    for (var r0 = rowStart; r0 < rowEnd; r0 += TM) {
      let rows = min(TM, rowEnd - r0);
      // Explicitly zeroed: a declaration in a loop body was seen to keep the previous iteration's values.
      var acc = array<vec4<f32>, TM>();
      if (colOk) {${packedStream(l, 'I4 * 4', 'H4', 'c4',
                                   {lhs: 'act', lhsRow: i => `r0 + ${i}`, accumulate: (i, v) => `acc[${i}] += ${v};`},
                                   {...t, decodeOnce: true}, 1, wholeSteps(l, s.I, t), t.downPrefetch)}
      }
      for (var i0 = 0; i0 < rows; i0 += RB) {
        for (var q = 0; q < RB; q++) {
          if (i0 + q < rows) { red[q * 256 + lid] = acc[i0 + q]; }
        }
        workgroupBarrier();
        let q = lid / NVW;
        let c = lid % NVW;
        let cc = colTile * NVW + c;
        if (q < RB && i0 + q < rows && cc < H4) {
          var v = vec4<f32>(0.0);
          for (var k = 0; k < KS; k++) { v += red[q * 256 + k * NVW + c]; }
          let r = r0 + i0 + q;
          part[r * H4 + cc] = v;
        }
        workgroupBarrier();
      }
    }
  }`;
}

/** Combine program binding order: route, work, part, [downBias]. */
export function combineBindings(s: DecodeShape): string[] {
  return ['route', 'work', 'part', ...(s.withBias ? ['downBias'] : [])];
}

/**
 * Program 5 after an expert-major down: out[t] = the sum of token t's K rows times their routing weights (1 with
 * probInAdvance: applied in upGate), and the weighted down biases.
 */
export function combineCode(s: DecodeShape, t: DecodeTiles): string {
  const names = combineBindings(s);
  const b = (n: string) => names.indexOf(n);
  return `${PRELUDE}${layoutConsts(s, t)}
  @group(0) @binding(${b('route')}) var<storage, read_write> route : array<i32>;
  @group(0) @binding(${b('work')}) var<storage, read_write> work : array<f32>;
  @group(0) @binding(${b('part')}) var<storage, read_write> part : array<vec4<f32>>;
  ${s.withBias ? `@group(0) @binding(${b('downBias')}) var<storage, read> downBias : array<vec4<f32>>;` : ''}
  @group(1) @binding(1) var<storage, read_write> out : array<vec4<f32>>;
  const T = ${s.T};
  const K = ${s.K};
  const H4 = ${s.H / 4};

  @compute @workgroup_size(256)
  fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
    let i = i32(gid.x);
    if (i >= T * H4) { return; }
    let t = i / H4;
    let c4 = i - t * H4;
    var v = vec4<f32>(0.0);
    for (var j = 0; j < K; j++) {
      let f = t * K + j;
      v += part[route[R_SLOT_ROW + f] * H4 + c4]${s.probInAdvance ? '' : ' * work[W_SLOTW + f]'};${s.withBias ? `
      v += work[W_SLOTW + f] * downBias[route[R_SLOT_EXPERT + f] * H4 + c4];` : ''}
    }
    out[i] = v;
  }`;
}
