/**
 * tfjs flags of the CUDA addon (set with tf.env().set(name, value) like any tfjs flag), kept for A/B timing:
 * the addon reads them through setTuning before a layer forward (syncCudaTuning). Registered by src/register_all.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

import {describeValue} from '../describe_value.js';
import type {CudaAddon} from './loader.js';

/** Programmatic dependent launch between the layer's kernels at decode sizes (sm_90+). */
export const MOE_CUDA_PDL = 'MOE_CUDA_PDL';
/**
 * The grouped GEMM's tile choice: 'default'; 'previous' (the choice from before the 128x256 prefill tiles);
 * 'stream' / 'stream8' (default, but at decode sizes the weight-streaming kernel with 4 / 8 columns per warp
 * instead of 16-row tensor-core tiles, the token-owned down GEMM with the combine at T * k * 8 <= E, and int4
 * expert weights read natively (W4A16); slower than the default on the H200: BENCHMARKS.md); 'mma32' (default with
 * 16 x 32 tensor-core tiles at decode sizes instead of 16 x 64); 'deep' / 'k128' / 'shallow' (default with the 16 x 64
 * decode tiles' pipeline forced to 8 stages of 64 along K (int4: 4 of 256), 4 of 128, or 4 of 64 (int4: 4 of 128);
 * the default takes the deeper one when the grid has fewer than two blocks per SM); 'no-preload' (default, but the
 * decode down GEMM waits for the up_gate GEMM before its first weight loads, as in session 3), 'int4-previous'
 * ('no-preload', with the previous int4 fragment decode in the bf16 16 x 64 tiles), 'int4-wide' (default, but int4
 * 16-row tiles 128 columns wide with 8 warps).
 */
export const MOE_CUDA_GEMM_TILES = 'MOE_CUDA_GEMM_TILES';
export const CUDA_GEMM_TILE_CHOICES =
    ['default', 'previous', 'stream', 'stream8', 'mma32', 'deep', 'k128', 'shallow', 'no-preload', 'int4-previous', 'int4-wide'] as const;
/**
 * The layer's decode fusions: 'none' (default: separate kernels, chained by programmatic dependent launch), 'route'
 * (router GEMM + routing + permute in one kernel, T <= 16), 'combine' (the weighted combine in the down GEMM's last
 * tile per column, T <= 32), 'all' (both). A/B: slower than 'none' on the H200 so far (BENCHMARKS.md).
 */
export const MOE_CUDA_FUSE = 'MOE_CUDA_FUSE';
export const CUDA_FUSE_CHOICES = ['none', 'all', 'route', 'combine'] as const;
/**
 * The sm_90a wgmma grouped GEMM (gemm_sm90.cuh) on an sm_90 device: 'auto' (default) where its tile table measured it
 * faster than the mma.sync GEMM (more than 8 expected rows per expert: T > 64 of a 128-expert top-8 layer), 'on' for
 * every half-precision GEMM it can run, 'off' never.
 */
export const MOE_CUDA_WGMMA = 'MOE_CUDA_WGMMA';
export const CUDA_WGMMA_CHOICES = ['auto', 'on', 'off'] as const;

/**
 * int4 expert weights read natively by the tensor-core GEMM tiles at decode and mid sizes (W4A16: codes dequantized
 * in registers; default true); false: those tiles read the dequantized copy (A/B).
 */
export const MOE_CUDA_INT4_MMA = 'MOE_CUDA_INT4_MMA';

/**
 * A host forward through CudaFusedMoe (the FusedMoE layer's 'cuda' backend) in two halves: the native call enqueues
 * the forward and returns, the output tensor is made while the GPU runs, then a second call waits and fills it
 * (default true; only while tfjs's cpu backend is active, the one that keeps the array without copying it); false:
 * one synchronous call, the tensor made after it (A/B).
 */
export const MOE_CUDA_SPLIT_FORWARD = 'MOE_CUDA_SPLIT_FORWARD';

function registerChoiceFlag(name: string, choices: readonly string[]): void {
  const env = tf.env();
  let valid: string = choices[0];
  env.registerFlag(name, () => choices[0], value => {
    if ((choices as readonly unknown[]).includes(value)) {
      valid = value as string;
    } else {
      env.set(name, valid);  // tfjs stores the value before this hook runs: put the last good one back
      throw new Error(`${name} must be one of ${choices.join(', ')}, got ${describeValue(value)}`);
    }
  });
}

export function registerCudaFlags(): void {
  tf.env().registerFlag(MOE_CUDA_PDL, () => true);
  registerChoiceFlag(MOE_CUDA_GEMM_TILES, CUDA_GEMM_TILE_CHOICES);
  registerChoiceFlag(MOE_CUDA_FUSE, CUDA_FUSE_CHOICES);
  registerChoiceFlag(MOE_CUDA_WGMMA, CUDA_WGMMA_CHOICES);
  tf.env().registerFlag(MOE_CUDA_INT4_MMA, () => true);
  tf.env().registerFlag(MOE_CUDA_SPLIT_FORWARD, () => true);
}

let pushed: string | null = null;

/** Passes the flags' current values to the addon when they changed since the last push. */
export function syncCudaTuning(addon: CudaAddon): void {
  const env = tf.env();
  const pdl = env.getBool(MOE_CUDA_PDL);
  const gemmTiles = env.get(MOE_CUDA_GEMM_TILES) as string;
  const fuse = env.get(MOE_CUDA_FUSE) as string;
  const int4Mma = env.getBool(MOE_CUDA_INT4_MMA);
  const wgmma = env.get(MOE_CUDA_WGMMA) as string;
  const key = `${pdl}/${gemmTiles}/${fuse}/${int4Mma}/${wgmma}`;
  if (key === pushed) return;
  addon.setTuning({pdl, gemmTiles, fuse, int4Mma, wgmma});
  pushed = key;
}
