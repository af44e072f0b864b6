/**
 * The decode programs' launch shapes as data: the first entry of DECODE_TUNING whose `where` matches the layer's
 * shape and whose token range holds T wins (an entry without `where` matches every shape). Entries come from the
 * launch-shape sweeps of bench/webgpu_decode_bench.ts on the H200 (BENCHMARKS.md names the run in `source`);
 * retuning means editing this table, not the programs.
 */
import type {DecodeShape, DecodeTiles} from './decode_programs.js';

export interface DecodeTuning {
  /** Shape fields the entry is measured for (absent: any shape). */
  where?: Partial<Pick<DecodeShape, 'H' | 'I' | 'E' | 'K'>>;
  /** Inclusive token range. */
  minTokens: number;
  maxTokens: number;
  tiles: DecodeTiles;
  /** Where the numbers behind the choice are. */
  source: string;
}

const QWEN3 = {H: 2048, I: 768, E: 128, K: 8};

export const DECODE_TUNING: readonly DecodeTuning[] = [
  // Qwen3-30B-A3B, H200 run 2 sweep: T = 1 up16x16_down4x64 0.091 ms (the run's default up8x32_down4x64 measured
  // cold); T = 16 up32x8_down16x16 0.620 ms vs 0.764 for up16x16_down8x32.
  {where: QWEN3, minTokens: 1, maxTokens: 1, tiles: {upNv: 16, upKs: 16, downNv: 4, downKs: 64, upRows: 16, routerPartials: 16384,
    routeLanes: 256, routeTopk: 'rounds'},
   source: 'BENCHMARKS.md H200 run 2 (launch-shape sweep, T = 1)'},
  {where: QWEN3, minTokens: 9, maxTokens: 32, tiles: {upNv: 32, upKs: 8, downNv: 16, downKs: 16, upRows: 16, routerPartials: 16384,
    routeLanes: 256, routeTopk: 'rounds'},
   source: 'BENCHMARKS.md H200 run 2 (launch-shape sweep, T = 16)'},
  // Any shape: narrow column tiles at small T put more workgroups on the GPU (few active experts); wider ones reuse
  // each token row over more columns as T grows.
  {minTokens: 1, maxTokens: 2, tiles: {upNv: 8, upKs: 32, downNv: 4, downKs: 64, upRows: 16, routerPartials: 16384,
    routeLanes: 256, routeTopk: 'rounds'},
   source: 'BENCHMARKS.md H200 run 1 (defaults)'},
  {minTokens: 3, maxTokens: 32, tiles: {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 16, routerPartials: 16384,
    routeLanes: 256, routeTopk: 'rounds'},
   source: 'BENCHMARKS.md H200 run 1 (defaults)'},
];

/** The tuned launch shapes for a layer shape and T (the table always has an entry for any shape). */
export function tunedDecodeTiles(s: Pick<DecodeShape, 'T' | 'H' | 'I' | 'E' | 'K'>,
                                 table: readonly DecodeTuning[] = DECODE_TUNING): DecodeTiles {
  for (const entry of table) {
    if (s.T < entry.minTokens || s.T > entry.maxTokens) continue;
    const w = entry.where;
    if (w != null && ((w.H != null && w.H !== s.H) || (w.I != null && w.I !== s.I) || (w.E != null && w.E !== s.E) ||
                      (w.K != null && w.K !== s.K))) {
      continue;
    }
    return entry.tiles;
  }
  throw new Error(`webgpu decode: no tuning entry for T = ${s.T} (DECODE_TUNING must cover every T it allows)`);
}
