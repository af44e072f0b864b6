/**
 * The decode programs' launch shapes as data: the first entry of DECODE_TUNING whose `where` matches the layer's
 * shape and whose token range holds T wins (an entry without `where` matches every shape). Entries come from the
 * launch-shape sweeps of bench/webgpu_decode_bench.ts on the H200 (BENCHMARKS.md names the run in `source`);
 * retuning means editing this table, not the programs.
 */
import type {DecodeShape, DecodeTiles} from './decode_programs.js';

/** What an entry can be keyed by: the layer shape, T and the bits per code of the routed weights (float32: 32). */
export type DecodeTuningKey = Pick<DecodeShape, 'T' | 'H' | 'I' | 'E' | 'K'> & {bits?: number};

export interface DecodeTuning {
  /** Fields the entry is measured for (absent: any; bits absent: any format). */
  where?: Partial<Omit<DecodeTuningKey, 'T'>>;
  /** Inclusive token range. */
  minTokens: number;
  maxTokens: number;
  tiles: DecodeTiles;
  /** Where the numbers behind the choice are. */
  source: string;
}

// The float32 rows (bits 32): packed weights stream fewer bytes per k and take their own rows or the any-shape defaults.
const QWEN3 = {H: 2048, I: 768, E: 128, K: 8, bits: 32};

/**
 * The route program's top-k with each lane's candidates in registers, its lane reductions by subgroup shuffles
 * (where the device has subgroups) and the mask placement (session 6 batch N, Qwen3 T = 16: route 0.039 -> 0.021
 * ms; int4 g32 layer GPU 0.228 -> 0.209, float16 0.346 -> 0.329, bfloat16 0.330 -> 0.312; the route program is
 * the same for every format and expert width). The folded T = 1 routing has no subgroups (upGate's threads).
 */
const ROUTE = {routerPartials: 16384, routeLanes: 256, routeTopk: 'keys', routeSubgroups: true, routePlace: 'mask'} as const;
/**
 * The word decoders' choices: mxfp4 and int4 codes as float16 bit patterns, two per unpack2x16float (session 4
 * batches I and J; other formats ignore them).
 */
const DECODERS = {e2m1Half: true, int4Half: true} as const;
/**
 * 4- and 8-bit codes at T = 5-16 (session 8 batches 1 and 1b, Qwen3 T = 16, GPU whole forward, interleaved rounds):
 * upGate's decode-once step written out per row count (upRowCases: upGate 0.112 -> 0.089 ms for int4 g32), whole
 * steps read unchecked, int4 codes as 1 + c / 16 (int4Unit; its rounding: docs/formats.md section 8). int4 g32
 * 0.2095 -> 0.1774 ms, mxfp4 0.212 -> 0.183, int8 0.234 -> 0.209; batch 2, old and new table in one run: 0.209 ->
 * 0.176, 0.211 -> 0.187, 0.236 -> 0.209 (one stream loop per row count and the router in token groups: no gain).
 * Not taken: the router's 16-token reduction, unit
 * info at once, the tile-major down, 3 rows (ties), prefetch and float-bit codes (slower). The halves keep checked
 * steps (bfloat16's down was slower unchecked: 0.110 vs 0.099 ms in both batches).
 */
const LOWBIT_T16 = {unchecked: true, upRowCases: true, int4Unit: 'half'} as const;
/**
 * The router at T = 5-16 (session 9 batch B1, Qwen3 T = 16, interleaved rounds, thr. / GPU ms; the router program
 * is the same for every code format of a row). 4- and 8-bit codes (32 router splits of the table): in 4 token
 * groups (256 workgroups instead of 64) with x staged, int4 g32 0.1710 / 0.1798 -> 0.1682 / 0.1772 (router 0.020 ->
 * 0.017 ms in its own pass; session 8 batch 2, without staging: GPU 0.1764 -> 0.1720). Staging alone: no gain (0.1744
 * / 0.1822); 4 splits in 4 token groups 0.1686 / 0.1759, 32 splits 0.1759 / 0.1835, 1 split per token 0.1758 /
 * 0.1856. The halves (8 splits in the table; 16 tokens' 256 rows do not fit staged): 16 splits, x staged, float16
 * 0.3234 / 0.3288 -> 0.3201 / 0.3247, bfloat16 0.3046 / 0.3132 -> 0.3030 / 0.3084 (router 0.028 -> 0.022 ms).
 * Staging is bitwise the table's partials; more token groups are too, other split counts change the sums' order.
 */
const ROUTER_LOWBIT_T16 = {routerTokenGroups: 4, routerStageX: true} as const;
const ROUTER_HALF_T16 = {routerPartials: 32768, routerStageX: true} as const;
/** T = 1 routing (session 3 batch F): 16 router splits, their loads at once, the router's row steps unrolled. */
const ROUTE_T1 = {routerPartials: 2048, routeLoads: 'spread', routerUnroll: 8} as const;

export const DECODE_TUNING: readonly DecodeTuning[] = [
  // Qwen3-30B-A3B, H200 batch A sweep (throughput, ms; every candidate once per round, medians of 3 rounds).
  // T = 1: up8x32_down2x128 0.0930 (also run 2's best); the rank top-k and fewer route lanes never won (T = 16:
  // 0.70 ms with rank vs 0.60 with rounds). T = 2: up32x8_down4x64 0.119 vs 0.145 for run 2's up8x32_down4x64.
  // T = 3-4: up16x16_down8x32 0.210. T = 5-16: up16x16_down8x32 with 4 rows in registers: T = 8 0.332, T = 16
  // 0.587 (vs 0.619 with 16 rows, 0.596 for run 2's T = 16 best up32x8_down16x16).
  // Batch C: at T = 1 the route program takes 0.031 ms with rounds, rank or a 10-barrier variant alike (its cost is
  // not its algorithm; BENCHMARKS.md batch C), so rounds stays.
  // Batch D: T = 1 folded (routing inside upGate, 3 programs): GPU whole forward 0.0947 vs 0.0950 ms (a tie: the
  // routing costs inside upGate what the route program cost), throughput 0.0886 vs 0.1027 (interleaved, 3 rounds);
  // T = 2 folded loses (0.133 vs 0.127 GPU, 0.122 vs 0.118 throughput), so it is the choice at T = 1 only.
  // Session 3 batch F (GPU time of the whole forward, 3 interleaved rounds after a warm-up): the router's partial
  // logits loaded all at once spread over the routing threads, the router's row steps unrolled by 8 and 16 router
  // splits: 0.0865 ms (folded; 4 programs 0.0887) vs 0.0952 for batch D's choice.
  {where: QWEN3, minTokens: 1, maxTokens: 1,
   tiles: {upNv: 8, upKs: 32, downNv: 2, downKs: 128, upRows: 16, ...ROUTE, fold: true, ...ROUTE_T1},
   source: 'BENCHMARKS.md H200 batch A (launch-shape sweep, T = 1); batch D (folded vs 4 programs); session 3 batch F'},
  {where: QWEN3, minTokens: 2, maxTokens: 2, tiles: {upNv: 32, upKs: 8, downNv: 4, downKs: 64, upRows: 16, ...ROUTE},
   source: 'BENCHMARKS.md H200 batch A (launch-shape sweep, T = 2)'},
  {where: QWEN3, minTokens: 3, maxTokens: 4, tiles: {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 16, ...ROUTE},
   source: 'BENCHMARKS.md H200 batch A (launch-shape sweep, T = 4)'},
  {where: QWEN3, minTokens: 5, maxTokens: 16, tiles: {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 4, ...ROUTE},
   source: 'BENCHMARKS.md H200 batch A (launch-shape sweep, T = 8 and 16)'},
  {where: QWEN3, minTokens: 17, maxTokens: 32, tiles: {upNv: 32, upKs: 8, downNv: 16, downKs: 16, upRows: 16, ...ROUTE},
   source: 'BENCHMARKS.md H200 run 2 (launch-shape sweep, T = 16; above the default decode limit of 16)'},
  // Packed experts on the Qwen3 shape. T = 1: folded, up16x16_down4x64 (batch E's candidates; batch F: int4 g32
  // whole forward 0.057 ms, float16 0.082), with the float32 row's routing (the same router and route code).
  // T = 5-16 (batch F, GPU time of the whole forward at T = 16): 2 rows in registers for 4- and 8-bit codes (int4 g32
  // 0.259 ms vs 0.268 with 4 rows, 0.265 with 1; int8 0.257 best), 4 for the halves (float16 0.345 vs 0.352 with 2);
  // exponent-bit codes tied (int4 0.256) or lost (int8 0.270), unrolling the router lost at T = 16 (0.29).
  // Session 4 batch I (T = 16, GPU time of the whole forward): int4 g32 with each quad of codes decoded once for 2
  // rows 0.249 ms vs 0.261 (4 rows 0.263, 8 0.301, 16 0.419), 32 router splits (routerPartials 32768) 0.257; int8
  // decoded once 0.260 vs 0.263; the halves lose with it (float16 0.354 vs 0.343); mxfp4's float16-pattern codes
  // (DECODERS) T = 1 0.161 vs 0.311 ms, T = 16 0.232 vs 0.452. Batch J (same run as batch I's table): the table
  // int4 g32 T = 16 0.240 vs 0.258, with int4 codes as float16 patterns 0.228 (thr. 0.220; T = 1 0.0486 vs 0.0502);
  // mxfp4 T = 16 0.231 vs 0.444, T = 1 0.048 vs 0.065; int8 0.256 vs 0.266; the down program per expert lost
  // everywhere (int4 0.293, its downExpert 0.12 ms vs the per-token down's 0.07), as did the route's loads at once.
  ...[4, 8, 16].flatMap(bits => [
    {where: {...QWEN3, bits}, minTokens: 1, maxTokens: 1,
     tiles: {upNv: 16, upKs: 16, downNv: 4, downKs: 64, upRows: 16, ...ROUTE, fold: true, ...ROUTE_T1, ...DECODERS},
     source: 'BENCHMARKS.md H200 session 3 batches E and F (packed T = 1); session 4 batches I and J (codes)'},
    {where: {...QWEN3, bits}, minTokens: 5, maxTokens: 16,
     tiles: bits === 16 ? {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 4, ...ROUTE, ...ROUTER_HALF_T16} :
         {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 2, ...ROUTE, routerPartials: 32768, decodeOnce: true,
          ...DECODERS, ...LOWBIT_T16, ...ROUTER_LOWBIT_T16},
     source: 'BENCHMARKS.md H200 session 3 batch F (packed T = 16 candidates); session 4 batches I and J; ' +
             'session 8 batches 1 and 1b; session 9 batch B1 (router)'},
  ]),
  // Any shape: narrow column tiles at small T put more workgroups on the GPU (few active experts); wider ones reuse
  // each token row over more columns as T grows.
  {minTokens: 1, maxTokens: 2, tiles: {upNv: 8, upKs: 32, downNv: 4, downKs: 64, upRows: 16, ...ROUTE, ...DECODERS},
   source: 'BENCHMARKS.md H200 run 1 (defaults)'},
  {minTokens: 3, maxTokens: 32, tiles: {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 16, ...ROUTE, ...DECODERS},
   source: 'BENCHMARKS.md H200 run 1 (defaults)'},
];

/** The tuned launch shapes for a layer shape and T (the table always has an entry for any shape). */
export function tunedDecodeTiles(s: DecodeTuningKey, table: readonly DecodeTuning[] = DECODE_TUNING): DecodeTiles {
  const bits = s.bits ?? 32;
  for (const entry of table) {
    if (s.T < entry.minTokens || s.T > entry.maxTokens) continue;
    const w = entry.where;
    if (w != null && ((w.H != null && w.H !== s.H) || (w.I != null && w.I !== s.I) || (w.E != null && w.E !== s.E) ||
                      (w.K != null && w.K !== s.K) || (w.bits != null && w.bits !== bits))) {
      continue;
    }
    return entry.tiles;
  }
  throw new Error(`webgpu decode: no tuning entry for T = ${s.T} (DECODE_TUNING must cover every T it allows)`);
}
