/**
 * The grouped GEMM's program choice on webgpu, from static shapes only (never data): the program variants'
 * parameters (GemmConfig), the named presets, and the tile table that maps rows per expert to a preset. Tuned
 * choices are data: GEMM_TILE_TABLE holds one row list per device class, measured by bench/webgpu_bench.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

import type {SwigluActivation} from '../kernel_names.js';
import {describeValue} from '../describe_value.js';
import {MOE_WEBGPU_GEMM_PRESET} from './flags_webgpu.js';

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
export type GemmConfig = TiledConfig | StreamConfig;

export function tileRows(c: GemmConfig): number {
  return c.kind === 'stream' ? c.tm : c.wy * c.rm;
}
export function tileCols(c: GemmConfig): number {
  return c.kind === 'stream' ? c.nv * 4 : c.wx * c.rn * c.vec;
}
export function threads(c: GemmConfig): number {
  return c.kind === 'stream' ? c.nv * c.ks : c.wx * c.wy;
}

export const GEMM_PRESETS: Record<string, GemmConfig> = {
  stream8: {kind: 'stream', tm: 8, nv: 16, ks: 16, unroll: 2},
  stream16: {kind: 'stream', tm: 16, nv: 16, ks: 16, unroll: 2},
  tiled16: {kind: 'tiled', wx: 32, wy: 4, rm: 4, rn: 1, tk: 16, vec: 4},
  tiled32: {kind: 'tiled', wx: 16, wy: 8, rm: 4, rn: 2, tk: 16, vec: 4},
  tiled64: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 1, tk: 16, vec: 4},
  tiled64x128: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 2, tk: 16, vec: 4},
  tiled128x64: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 1, tk: 16, vec: 4},
  tiled128: {kind: 'tiled', wx: 16, wy: 16, rm: 8, rn: 2, tk: 16, vec: 4},
  scalar: {kind: 'tiled', wx: 16, wy: 16, rm: 4, rn: 4, tk: 16, vec: 1},
};

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
}

/**
 * Rows per expert -> preset, first matching row wins; a 'stream' preset is skipped for transposeRhs (it reads
 * rhs as [K,N]). 'default' is the H100 run in BENCHMARKS.md: stream only wins while experts hold a few rows each
 * (at 16 rows per expert tiled32 was 2.4x faster than stream16); 64- and 128-row tiles tie at 256 rows per expert.
 */
export const GEMM_TILE_TABLE: Record<string, readonly TileChoice[]> = {
  default: [
    {maxRowsPerExpert: 4, preset: 'stream8'},
    {maxRowsPerExpert: 48, preset: 'tiled32'},
    {maxRowsPerExpert: Infinity, preset: 'tiled64'},
  ],
};

/**
 * Picks the program from static shapes only. Rows per expert decide: a handful means weight streaming dominates
 * (stream), many mean arithmetic does (larger tiles reuse each loaded weight across more rows).
 */
export function chooseGemmConfig(s: GemmShape, maxWorkgroupStorage: number, deviceClass = 'default'): GemmConfig {
  const preset = tf.env().get(MOE_WEBGPU_GEMM_PRESET) as string;
  const presetOverride = preset === '' ? null : preset;
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
    const bytes = (tk: number) => tk * (tileRows(config) + tileCols(config)) * 4 + threads(config) * 4 + 64;
    let tk = config.tk;
    while (tk > 4 && bytes(tk) > maxWorkgroupStorage) tk /= 2;
    config = {...config, tk};
  }
  return config;
}

/** Upper bound on the schedule's tiles: every non-empty part adds at most one partial tile. */
export function maxTiles(numRows: number, numExperts: number, tm: number): number {
  const parts = Math.min(numExperts + 2, numRows);
  return Math.ceil((numRows + parts * (tm - 1)) / tm);
}
