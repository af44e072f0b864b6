/**
 * The grouped GEMM's program choice on webgpu, from static shapes only (never data): the program variants'
 * parameters (GemmConfig), the named presets, and the tile table that maps rows per expert to a preset. Tuned
 * choices are data: GEMM_TILE_TABLE holds one row list per device class, measured by bench/webgpu_bench.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

import type {ExpertWeightLayout} from '../expert_weight_formats.js';
import type {SwigluActivation} from '../kernel_names.js';
import {describeValue} from '../describe_value.js';
import {MOE_WEBGPU_GEMM_PRESET} from './flags_webgpu.js';
import {HALF_MATRIX_SUBGROUP, HalfMatrixShape} from './half_matrices.js';

export interface GemmShape {
  numRows: number;     // R
  depth: number;       // K
  width: number;       // N
  numExperts: number;  // E
  transposeRhs: boolean;
  hasBias: boolean;
  /** SwiGLU epilogue: output [R, N/2] (see the file comment); needs transposeRhs false. */
  swiglu?: boolean;
  /** With swiglu: a per-row scale [R] multiplies the output (probInAdvance). */
  hasScale?: boolean;
  /** With swiglu: which activation (default 'swiglu'); it does not affect the program choice. */
  activation?: SwigluActivation;
  /**
   * Packed expert weights (docs/formats.md; never 'float32'): rhs is their tensors (values, scales?, zeroPoints?),
   * decoded in the program's loads; transposeRhs equals packed.transposed.
   */
  packed?: ExpertWeightLayout;
}

export interface TiledConfig {
  kind: 'tiled';
  wx: number;
  wy: number;
  rm: number;
  rn: number;
  tk: number;
  /** 4: rhs/bias/output as vec4 over N (N % 4 == 0); 1: scalar. */
  vec: 1 | 4;
  /**
   * 4: the lhs tile is read from shared memory as vec4 of rows (RM % 4 == 0), so a k step costs RM/4 + RN shared
   * loads for 4 RM RN FMAs; 1 (default): RM scalar loads.
   */
  av?: 1 | 4;
  /**
   * Register prefetch: the global loads of step k0 + TK are issued before the FMAs of step k0 (their latency hides
   * behind them) and stored into shared memory after; default off.
   */
  prefetch?: boolean;
}
export interface StreamConfig {
  kind: 'stream';
  /** rows per tile */
  tm: number;
  /** vec4 columns per workgroup, and k-lanes: nv * ks threads. */
  nv: number;
  ks: number;
  /** independent k4 steps per loop iteration (loads in flight per thread = 4 * unroll). */
  unroll: number;
}
/**
 * Tiled on subgroup matrices (half_matrices.ts; never by default): TM x TN tiles, TK = 32 per staged step, in
 * matrices of sm x sk times sk x sn (the device's shape). `subgroups` of 32 stage the tiles together; the matrix
 * builtins need workgroup-uniform offsets, so with split false every subgroup multiplies the whole tile (the same
 * result written by each), with split true subgroup g takes columns [g TN/s, (g+1) TN/s) and the program turns
 * off the uniformity diagnostic for its per-subgroup offsets.
 */
export interface MatrixConfig {
  kind: 'matrix';
  tm: number;
  tn: number;
  tk: number;
  sm: number;
  sn: number;
  sk: number;
  prefetch: boolean;
  subgroups: 1 | 4 | 8;
  split: boolean;
  /** With split: the subgroups form rowGroups rows of subgroups / rowGroups column blocks (default 1). */
  rowGroups?: 1 | 2;
  /**
   * With split: 'subgroup' = each subgroup writes its own results through a 16-row scratch of its columns (its
   * column block holds gate then up columns for SwiGLU), instead of the whole f32 result tile Cs [TM][TN]: less
   * workgroup memory, so larger tiles fit. 'serial': the same, the subgroups taking turns in one scratch of a
   * subgroup's block (a few barriers per tile for a quarter of that memory: more workgroups per SM).
   */
  epilogue?: 'tile' | 'subgroup' | 'serial';
  /** Row strides of As (TK + 8) and Bs (TN + 8) halves, so a matrix load's rows fall in distinct banks. */
  pad?: boolean;
  /**
   * Decode in f16 (symmetric int4: (0x6400 | c) as a half is 1024 + c, minus 1032 is c - 8 exactly, times the
   * scale rounded to f16; int8 likewise; float16: the word's two halves as they are), two values per 32-bit
   * operation, no int -> float or f32 -> f16 conversions per weight; other formats decode in f32 as without it.
   */
  hd?: boolean;
  /** The lhs tile's global reads k fastest across invocations (default: rows fastest). */
  lhsKFast?: boolean;
  /**
   * With prefetch: how many TK steps ahead the global loads run (default 1), one register set per step in flight.
   * Few rows per expert leave each step only a few matrix multiplies to hide its loads' latency behind.
   */
  depth?: 1 | 2 | 3;
  /**
   * Benchmark probes (wrong results, never chosen by the table): 'nob' stages no weight tile (bounds the matrix
   * program without its weight loads and decode), 'nost' stages neither tile (the matrix multiplies, barriers and
   * epilogue alone).
   */
  probe?: 'nob' | 'nost';
  /**
   * 2: As and Bs are double-buffered, so a TK step stores the next step's tiles into the other buffer after its
   * multiplies and needs one barrier instead of two (with prefetch, depth 1); default 1.
   */
  buffers?: 1 | 2;
  /**
   * The device's 16 x 8 x 16 matrices (N = 8, the shape of one tensor-core instruction) instead of its square
   * ones; the preset runs only where the device lists that configuration (HalfMatrixShape.n8).
   */
  n8?: boolean;
  /**
   * Row matrices of a tile past its segment's last row are neither loaded nor multiplied, so a tall tile over a
   * short segment (the last tile of a ragged one) pays the tensor-core work of its rows only, while its weight
   * tile is still staged once for all of them.
   */
  rowSkip?: boolean;
  /**
   * Where K is a multiple of TK (the program checks, and the shader key says which), the f16-decoded weight rows
   * are stored without their k < K selects.
   */
  wholeSteps?: boolean;
  /**
   * Benchmark probe (never in a table): this many bytes of workgroup memory that the program holds but does not
   * use, so the same code runs with fewer workgroups per SM (whether occupancy bounds it).
   */
  reserveBytes?: number;
}
export type GemmConfig = TiledConfig | StreamConfig | MatrixConfig;

export function tileRows(c: GemmConfig): number {
  return c.kind === 'stream' ? c.tm : c.kind === 'matrix' ? c.tm : c.wy * c.rm;
}
export function tileCols(c: GemmConfig): number {
  return c.kind === 'stream' ? c.nv * 4 : c.kind === 'matrix' ? c.tn : c.wx * c.rn * c.vec;
}
export function threads(c: GemmConfig): number {
  return c.kind === 'stream' ? c.nv * c.ks : c.kind === 'matrix' ? c.subgroups * HALF_MATRIX_SUBGROUP : c.wx * c.wy;
}

/** Workgroup memory of a tiled or matrix config: its tiles (f32, or f16 tiles + the f32 result tile) + the scan. */
export function workgroupBytes(c: TiledConfig | MatrixConfig): number {
  const pad = c.kind === 'matrix' && c.pad === true ? 8 : 0;
  const result = c.kind !== 'matrix' ? 0 : c.split && c.epilogue === 'subgroup' ?
      c.sm * c.tn * (c.rowGroups ?? 1) * 4 : c.split && c.epilogue === 'serial' ?
      c.sm * c.tn / (c.subgroups / (c.rowGroups ?? 1)) * 4 : c.tm * c.tn * 4;
  const tiles = c.kind === 'matrix' ? (c.tm * (c.tk + pad) + c.tk * (c.tn + pad)) * 2 * (c.buffers ?? 1) + result :
      c.tk * (tileRows(c) + tileCols(c)) * 4;
  return tiles + threads(c) * 4 + 64 + (c.kind === 'matrix' ? c.reserveBytes ?? 0 : 0);
}

const GEMM_PRESETS_BASE: Record<string, GemmConfig> = {
  stream8: {kind: 'stream', tm: 8, nv: 16, ks: 16, unroll: 2},
  stream16: {kind: 'stream', tm: 16, nv: 16, ks: 16, unroll: 2},
  tiled16: {kind: 'tiled', wx: 32, wy: 4, rm: 4, rn: 1, tk: 16, vec: 4},
  tiled32: {kind: 'tiled', wx: 16, wy: 8, rm: 4, rn: 2, tk: 16, vec: 4},
  tiled64: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 1, tk: 16, vec: 4},
  tiled64x128: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 2, tk: 16, vec: 4},
  tiled128x64: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 1, tk: 16, vec: 4},
  tiled128: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 2, tk: 16, vec: 4},
  scalar: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 4, tk: 16, vec: 1},
  // Register-blocked variants (vec4 lhs reads from shared memory, prefetched global loads), named rows x columns.
  r16x256: {kind: 'tiled', wx: 32, wy: 4, rm: 4, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r16x512: {kind: 'tiled', wx: 64, wy: 2, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r24x256: {kind: 'tiled', wx: 32, wy: 3, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r32x256: {kind: 'tiled', wx: 32, wy: 4, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r32x128: {kind: 'tiled', wx: 16, wy: 8, rm: 4, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r16x128: {kind: 'tiled', wx: 16, wy: 4, rm: 4, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r16x64: {kind: 'tiled', wx: 8, wy: 4, rm: 4, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r32x64: {kind: 'tiled', wx: 8, wy: 8, rm: 4, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r64x128: {kind: 'tiled', wx: 16, wy: 8, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r64x256: {kind: 'tiled', wx: 32, wy: 8, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r128x128: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 2, tk: 16, vec: 4, av: 4, prefetch: true},
  r128x128k32: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 2, tk: 32, vec: 4, av: 4, prefetch: true},
  r64x128np: {kind: 'tiled', wx: 16, wy: 8, rm: 8, rn: 2, tk: 16, vec: 4, av: 4},
  r128x128np: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 2, tk: 16, vec: 4, av: 4},
  // Subgroup matrices (sm/sn/sk are the device's, filled in by chooseGemmConfig).
  m16x64: {kind: 'matrix', tm: 16, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 1, split: false},
  m16x128: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 1, split: false},
  m32x64: {kind: 'matrix', tm: 32, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 1, split: false},
  m64x64: {kind: 'matrix', tm: 64, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: false, subgroups: 1, split: false},
  m16x64r4: {kind: 'matrix', tm: 16, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: false},
  m32x64r4: {kind: 'matrix', tm: 32, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: false},
  m16x128s4: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: true},
  m32x128s4: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: true},
  m64x128s4: {kind: 'matrix', tm: 64, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: true},
  m64x64s4: {kind: 'matrix', tm: 64, tn: 64, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4, split: true},
  // Session 4: padded strides (p), f16 decode (h), and the probes n (no weight tile) / z (no tiles) of the h kind.
  ...matrixVariants('m16x128s4'),
  ...matrixVariants('m32x128s4'),
  ...matrixVariants('m64x128s4'),
  ...matrixVariants('m16x64s4'),
  ...matrixVariants('m32x64s4'),
  ...matrixVariants('m16x256s4'),
  // Without the register prefetch (fewer registers: more workgroups per SM).
  m16x128s4h0: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: false, subgroups: 4,
                split: true, pad: true, hd: true},
  m128x128s8e0: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: false, subgroups: 8,
                 split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup'},
  // The lhs tile read k fastest (l).
  m128x128s8e0l: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: false, subgroups: 8,
                  split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup', lhsKFast: true},
  m128x128s8el: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                 split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup', lhsKFast: true},
  m64x128s4hl: {kind: 'matrix', tm: 64, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true, lhsKFast: true},
  m16x128s4hl: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true, lhsKFast: true},
  // 8 subgroups (256 invocations stage the tiles), in 2 rows x 4 column blocks or 8 column blocks.
  m64x128s8h: {kind: 'matrix', tm: 64, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
               split: true, rowGroups: 2, pad: true, hd: true},
  m32x128s8h: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
               split: true, rowGroups: 2, pad: true, hd: true},
  // The subgroup epilogue (e): 128-row tiles fit.
  m128x128s8e: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup'},
  m64x128s8e: {kind: 'matrix', tm: 64, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
               split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup'},
  m128x128s8en: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                 split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup', probe: 'nob'},
  m128x128s8ez: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                 split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup', probe: 'nost'},
  m128x128s4e: {kind: 'matrix', tm: 128, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup'},
  m16x128s4e: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
               split: true, pad: true, hd: true, epilogue: 'subgroup'},
  // TK = 64: half the barriers per k.
  m16x128s4hk: {kind: 'matrix', tm: 16, tn: 128, tk: 64, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true},
  m64x128s8ek: {kind: 'matrix', tm: 64, tn: 128, tk: 64, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                split: true, rowGroups: 2, pad: true, hd: true, epilogue: 'subgroup'},
  m16x256s8h: {kind: 'matrix', tm: 16, tn: 256, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
               split: true, pad: true, hd: true},
};

export const GEMM_PRESETS: Record<string, GemmConfig> = {
  ...GEMM_PRESETS_BASE,
  // Session 6: loads 2 or 3 TK steps ahead (depth), named by a trailing digit. H200 batches N / O, the two GEMMs at
  // T = 256: float16 m16x128s4h 1.028 -> 2 steps 0.945, 3 steps 0.962 ms (O, medians of 3 interleaved); int4 g32
  // 1.092 -> 1.108 / 1.079 (O), 4 steps 1.944 (N); T = 4096 int4 g32 m128x128s8el2 5.262 vs m128x128s8e0l 5.315 (N).
  // 4 steps and batch N's other deep variants (k-first lhs, 64 columns, TK 64, 32 rows) lost by 20-100%: dropped.
  ...deeper('m16x128s4h', [2, 3]),
  ...deeper('m128x128s8el', [2]),
  // Session 7: double-buffered tiles, one barrier per TK step (b), and the 16 x 8 x 16 matrices (q).
  ...variantsOf('m16x128s4h', {b: {buffers: 2}, q: {n8: true}, bq: {buffers: 2, n8: true}, u: {wholeSteps: true},
                               '2u': {depth: 2, wholeSteps: true}}),
  ...variantsOf('m16x128s4hl', {b: {buffers: 2}}),
  ...variantsOf('m16x128s4e', {b: {buffers: 2}}),
  ...variantsOf('m32x128s4h', {b: {buffers: 2}}),
  ...variantsOf('m64x128s8e', {lb: {buffers: 2, lhsKFast: true}}),
  ...variantsOf('m128x128s8e0l', {q: {n8: true}}),
  // Occupancy probes (R: KiB of workgroup memory held unused) and TK = 16 (t: half the tiles' memory).
  ...variantsOf('m16x128s4h', {R4: {reserveBytes: 4096}, R8: {reserveBytes: 8192}, R16: {reserveBytes: 16384},
                               t: {tk: 16}, t3: {tk: 16, depth: 3}}),
  // Taller tiles that skip their empty row matrices (r): each expert's weights staged about once at T = 256.
  ...variantsOf('m32x128s4h', {r: {rowSkip: true}, rb: {rowSkip: true, buffers: 2}}),
  ...variantsOf('m32x64s4h', {r: {rowSkip: true}}),
  ...variantsOf('m32x128s8h', {r: {rowSkip: true}}),
  m32x128s4er: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true},
  m48x128s4er: {kind: 'matrix', tm: 48, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true},
  m32x128s4eru: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                 split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true, wholeSteps: true},
  // One scratch for the subgroups in turn (s): 2 KiB of results instead of 8.
  m16x128s4su: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                split: true, pad: true, hd: true, epilogue: 'serial', wholeSteps: true},
  m16x128s4s3u: {kind: 'matrix', tm: 16, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                 split: true, pad: true, hd: true, epilogue: 'serial', wholeSteps: true, depth: 3},
  m32x128s4sru: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                 split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true},
  m32x128s4sr2u: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                  split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true, depth: 2},
  // Session 8 (batches B1, B2): the serial epilogue's winners with the lhs read k first (l) and loads 2 steps
  // ahead. Without the register prefetch (m32x128s4sru0 0.758 ms vs 0.654, B1) and with TK = 64 (m32x128s4srku
  // 1.362) they lost: dropped (and m32x128s4erul, the subgroup epilogue read k first: 0.753).
  m32x128s4srul: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                  split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true},
  m32x256s8srul: {kind: 'matrix', tm: 32, tn: 256, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                  split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true, lhsKFast: true},
  m32x128s4eru2: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                  split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true, wholeSteps: true, depth: 2},
  m32x256s8sru: {kind: 'matrix', tm: 32, tn: 256, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                 split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true},
  // Session 9 (batch B1): the 256-column tiles with loads 2 steps ahead and the lhs read k first (int4's table
  // row). Lost in B1 and dropped: m32x256s8sr2u and m32x128s4sr2ul (all four formats but int4's sr2u, beaten by
  // sr2ul), and the 256-column tiles with int8 decoded in f32 (0.656 ms vs 0.614 with the f16 decode).
  m32x256s8sr2ul: {kind: 'matrix', tm: 32, tn: 256, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 8,
                   split: true, pad: true, hd: true, epilogue: 'serial', rowSkip: true, wholeSteps: true, depth: 2,
                   lhsKFast: true},
  m32x128s4er2: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                 split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true, depth: 2},
  m32x128s4erb: {kind: 'matrix', tm: 32, tn: 128, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                 split: true, pad: true, hd: true, epilogue: 'subgroup', rowSkip: true, buffers: 2},
};

/** Copies of a matrix preset with some parameters changed, named name + suffix. */
function variantsOf(name: string, changes: Record<string, Partial<MatrixConfig>>): Record<string, MatrixConfig> {
  const base = GEMM_PRESETS_BASE[name] as MatrixConfig;
  return Object.fromEntries(Object.entries(changes).map(([suffix, c]) => [`${name}${suffix}`, {...base, ...c}]));
}

/** Copies of a matrix preset with its loads `depth` steps ahead, named name + depth (MatrixConfig.depth). */
function deeper(name: string, depths: Array<2 | 3>): Record<string, MatrixConfig> {
  const base = GEMM_PRESETS_BASE[name] as MatrixConfig;
  return Object.fromEntries(depths.map(d => [`${name}${d}`, {...base, prefetch: true, depth: d}]));
}

/** The p / h / n / z variants of a 4-subgroup split matrix preset named m{TM}x{TN}s4 (see MatrixConfig). */
function matrixVariants(name: string): Record<string, MatrixConfig> {
  const [tm, tn] = name.slice(1, -2).split('x').map(Number);
  const base: MatrixConfig = {kind: 'matrix', tm, tn, tk: 32, sm: 16, sn: 16, sk: 16, prefetch: true, subgroups: 4,
                              split: true};
  return {[`${name}p`]: {...base, pad: true}, [`${name}h`]: {...base, pad: true, hd: true},
          [`${name}n`]: {...base, pad: true, hd: true, probe: 'nob'},
          [`${name}z`]: {...base, pad: true, hd: true, probe: 'nost'}};
}

/** Forces one preset for every batchedGemm on webgpu (benchmarks compare them); null restores the heuristic. */
export function setWebGPUGemmPreset(name: string | null): void {
  if (name != null && !(name in GEMM_PRESETS)) {
    throw new Error(`setWebGPUGemmPreset: argument 'name' must be one of ${Object.keys(GEMM_PRESETS).join(', ')} ` +
        `or null, got ${describeValue(name)}`);
  }
  tf.env().set(MOE_WEBGPU_GEMM_PRESET, name ?? '');
}

/** One row of the tile table: the preset for shapes with at most maxRowsPerExpert rows per expert. */
export interface TileChoice {
  maxRowsPerExpert: number;
  preset: keyof typeof GEMM_PRESETS;
  /** Only for these weight formats (a packed layout's format, 'float32' for float weights); default every format. */
  formats?: readonly string[];
  /** Only for the GEMM with (true) or without (false) the SwiGLU epilogue; default both. */
  swiglu?: boolean;
}

/** Whether a table row applies to this GEMM's weights and epilogue (TileChoice.formats, swiglu). */
function rowApplies(c: TileChoice, s: GemmShape): boolean {
  return (c.formats == null || c.formats.includes(s.packed?.format ?? 'float32')) &&
      (c.swiglu == null || c.swiglu === (s.swiglu === true));
}

/**
 * Rows per expert -> preset, first matching row wins; a 'stream' preset is skipped for transposeRhs (it reads
 * rhs as [K,N]). 'default': stream only wins while experts hold a few rows each (H100 run in BENCHMARKS.md: at 16
 * rows per expert tiled32 was 2.4x faster than stream16); the register-blocked tiles took both tiled rows on the
 * H200 (batch E, BENCHMARKS.md issue 15, the two expert GEMMs of Qwen3-30B-A3B): at 16 rows per expert r32x128
 * 1.30-1.60 ms vs tiled32 1.85-2.53 (float32, float16, int8, int4 g32), at 256 r64x256 10.9-12.0 ms vs tiled64
 * 14.2-15.8; batch F: at 16 rows r16x128 beat r32x128 on four formats of five (1.31-1.66 vs 1.37-1.74 ms).
 */
export const GEMM_TILE_TABLE: Record<string, readonly TileChoice[]> = {
  default: [
    {maxRowsPerExpert: 4, preset: 'stream8'},
    {maxRowsPerExpert: 24, preset: 'r16x128'},
    {maxRowsPerExpert: 48, preset: 'r32x128'},
    {maxRowsPerExpert: Infinity, preset: 'r64x256'},
  ],
};

/**
 * Rows per expert -> matrix preset, where the half-matrix program may run (the stream rows keep streaming). H200
 * batch H (int4 g32, the two GEMMs): 4 subgroups splitting the columns were the fastest, m16x128s4 1.70 ms at 16
 * rows per expert and m64x128s4 12.36 ms at 256 (exact r16x128 / r64x256 in the same run 1.61 / 11.80). Session 4,
 * batch I: padded strides and the f16 decode made it pay: m16x128s4h 1.18 ms at 16 rows (exact 1.65), at 256
 * rows m64x128s4h 8.43 and, with each subgroup writing its own results, 128-row tiles m128x128s8e 7.30 (exact
 * 11.91); float16 1.07 / 6.19 (exact 1.43 / 11.19). Batch J: without the register prefetch the 128-row tiles took
 * 6.60 ms against 7.84 (same process); at 64 rows per expert (T = 1024) the 64- and 128-row kinds tied (2.62-2.74).
 * Batch K: reading the activation tile k first (whole sectors) took the 128-row tiles to 5.51 ms (7.11 with
 * prefetch and rows first) and m64x128s4h to 7.51 (8.40 in J); at 16 rows it tied (1.089 / 1.090), so that row keeps
 * its preset. Session 6 (T = 256, the two GEMMs): loads 2 steps ahead took float16 from 0.951 to 0.886 ms
 * (m16x128s4h2; batch N) and from 1.028 to 0.945 (batch O, medians of 3 interleaved), but not int4 g32 (N: 1.145 ->
 * 1.159, 3 steps 1.125, 4 steps 1.944; O: 1.092 -> 1.108), hence a float16 row.
 */
export const MATRIX_TILE_TABLE: readonly TileChoice[] = [
  // Session 7 (H200 batch b2, the two GEMMs' GPU time at T = 256, medians of 7 interleaved rounds): 32-row tiles
  // that skip empty row matrices stage each expert's weights about once: int4 g32 0.946 -> 0.793 ms
  // (m32x128s4eru), float16 0.802 -> 0.736 (m32x128s4er). Session 8 (batch B1, same measure, 5 rounds): the
  // subgroups writing their results in turn through one 2 KiB scratch (13.6 KiB per workgroup instead of 19.6:
  // more workgroups per SM) took int4 g32 0.793 -> 0.654 ms (m32x128s4sru), with loads 2 steps ahead its SwiGLU
  // GEMM 0.410 -> 0.374; 256 columns over 8 subgroups (22.1 KiB, the lhs tile staged once per 256 columns) the
  // down GEMM 0.277 -> 0.221 and float16 0.740 -> 0.549 (m32x256s8sru). TK = 64 and no register prefetch lost.
  // Session 9 (batch B1, same measure, 7 rounds; session 8's rows in the same process): the 256-column tiles with
  // the lhs tile read k first took float16 0.549 -> 0.510 ms (m32x256s8srul), bfloat16 0.918 (m16x128s4h) -> 0.528,
  // int8 g128 1.373 -> 0.591 and int8 per column 1.341 -> 0.592; int4 g32 0.593 -> 0.541 with loads 2 steps ahead
  // as well (m32x256s8sr2ul, both GEMMs: 0.339 + 0.202). Loads 2 steps ahead lose for the 2- and 1-byte formats
  // (float16 0.713, bfloat16 0.765, int8 0.90: twice their larger word loads in registers).
  {maxRowsPerExpert: 24, preset: 'm32x256s8sr2ul', formats: ['int4']},
  {maxRowsPerExpert: 24, preset: 'm32x256s8srul', formats: ['float16', 'bfloat16', 'int8']},
  {maxRowsPerExpert: 24, preset: 'm16x128s4h'},
  {maxRowsPerExpert: 96, preset: 'm64x128s4hl'},
  // T = 4096 (b1, b2): float16 m128x128s8el 4.47 ms (e0l 5.00, el2 4.62); int4 g32 down GEMM m128x128s8el2 1.60
  // (e0l 1.74), its SwiGLU GEMM e0l 3.31 (el2 3.38).
  {maxRowsPerExpert: Infinity, preset: 'm128x128s8el', formats: ['float16']},
  {maxRowsPerExpert: Infinity, preset: 'm128x128s8e0l', swiglu: true},
  {maxRowsPerExpert: Infinity, preset: 'm128x128s8el2'},
];

/**
 * Picks the program from static shapes only. Rows per expert decide: a handful means weight streaming dominates
 * (stream), many mean arithmetic does (larger tiles reuse each loaded weight across more rows).
 */
export function chooseGemmConfig(s: GemmShape, maxWorkgroupStorage: number, deviceClass = 'default',
                                 halfMatrix: HalfMatrixShape | null = null): GemmConfig {
  const preset = tf.env().get(MOE_WEBGPU_GEMM_PRESET) as string;
  const presetOverride = preset === '' ? null : preset;
  const matrix = matrixConfig(s, maxWorkgroupStorage, halfMatrix, presetOverride);
  if (matrix != null) return matrix;
  if (presetOverride != null && GEMM_PRESETS[presetOverride].kind === 'matrix') {
    // A matrix preset where the matrix program cannot run: the heuristic's choice.
    return withFlagsOff(() => chooseGemmConfig(s, maxWorkgroupStorage, deviceClass));
  }
  // The SwiGLU epilogue's vec4 output needs I = N/2 to be a multiple of 4.
  const vectorizable = s.width % (s.swiglu ? 8 : 4) === 0 && s.depth % 4 === 0;
  let config: GemmConfig;
  if (presetOverride != null && (vectorizable || GEMM_PRESETS[presetOverride].kind === 'tiled')) {
    config = GEMM_PRESETS[presetOverride];
    if (!vectorizable && config.kind === 'tiled') config = GEMM_PRESETS.scalar;
    if (config.kind === 'stream' && s.transposeRhs) config = GEMM_PRESETS.tiled32;
  } else if (!vectorizable) {
    config = GEMM_PRESETS.scalar;
  } else {
    const rowsPerExpert = s.numRows / Math.max(1, s.numExperts);
    const choice = GEMM_TILE_TABLE[deviceClass].find(c => rowsPerExpert <= c.maxRowsPerExpert &&
        !(s.transposeRhs && GEMM_PRESETS[c.preset].kind === 'stream'))!;
    config = GEMM_PRESETS[choice.preset];
  }
  if (config.kind === 'tiled' && s.swiglu && config.rn % 2 === 1) config = {...config, rn: config.rn * 2};
  if (config.kind === 'tiled') {
    // Shared memory: As (TK*TM f32) + Bs (TK*TN f32) + the schedule scan; halve TK where the device is small.
    let c = config;
    while (c.tk > 4 && workgroupBytes(c) > maxWorkgroupStorage) c = {...c, tk: c.tk / 2};
    config = c;
  }
  return config;
}

/**
 * The matrix config for this GEMM, or null: the device's matrix shape must exist (halfMatrixShape), the layout be
 * the vectorized [E,K,N] one (packed formats through the word decoders: 32 a multiple of their codes per word),
 * experts hold more rows than the stream programs take, and the tiles fit in workgroup memory.
 */
function matrixConfig(s: GemmShape, maxWorkgroupStorage: number, h: HalfMatrixShape | null,
                      presetOverride: string | null): MatrixConfig | null {
  if (h == null || s.transposeRhs || s.depth % 4 !== 0 || s.width % (s.swiglu ? 8 : 4) !== 0) return null;
  const rowsPerExpert = s.numRows / Math.max(1, s.numExperts);
  let name: string;
  if (presetOverride != null) {
    if (GEMM_PRESETS[presetOverride].kind !== 'matrix') return null;
    name = presetOverride;
  } else {
    if (rowsPerExpert <= GEMM_TILE_TABLE.default[0].maxRowsPerExpert) return null;
    name = MATRIX_TILE_TABLE.find(c => rowsPerExpert <= c.maxRowsPerExpert && rowApplies(c, s))!.preset;
  }
  const preset = GEMM_PRESETS[name] as MatrixConfig;
  if (preset.n8 === true && h.n8 !== true) return null;
  const c = {...preset, sm: h.m, sn: preset.n8 === true ? 8 : h.n, sk: h.k};
  const rowGroups = c.split ? c.rowGroups ?? 1 : 1;
  const fits = (c.tm / rowGroups) % c.sm === 0 && (c.tn / (c.split ? c.subgroups / rowGroups : 1)) % c.sn === 0 &&
      c.tk % c.sk === 0 &&
      (c.tn / 2) % 4 === 0;
  return fits && workgroupBytes(c) <= maxWorkgroupStorage ? c : null;
}

/** Runs fn with the preset flag cleared (restored after). */
function withFlagsOff<T>(fn: () => T): T {
  const preset = tf.env().get(MOE_WEBGPU_GEMM_PRESET) as string;
  tf.env().set(MOE_WEBGPU_GEMM_PRESET, '');
  try {
    return fn();
  } finally {
    tf.env().set(MOE_WEBGPU_GEMM_PRESET, preset);
  }
}

/** Upper bound on the schedule's tiles: every non-empty part adds at most one partial tile. */
export function maxTiles(numRows: number, numExperts: number, tm: number): number {
  const parts = Math.min(numExperts + 2, numRows);
  return Math.ceil((numRows + parts * (tm - 1)) / tm);
}
