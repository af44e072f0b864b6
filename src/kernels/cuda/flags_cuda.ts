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
 * 16 x 32 tensor-core tiles at decode sizes instead of 16 x 64).
 */
export const MOE_CUDA_GEMM_TILES = 'MOE_CUDA_GEMM_TILES';
export const CUDA_GEMM_TILE_CHOICES = ['default', 'previous', 'stream', 'stream8', 'mma32'] as const;
/**
 * The sm_90a wgmma grouped GEMM (gemm_sm90.cuh) on an sm_90 device: 'auto' (default) where its tile table measured it
 * faster than the mma.sync GEMM (more than 8 expected rows per expert: T > 64 of a 128-expert top-8 layer), 'on' for
 * every half-precision GEMM it can run, 'off' never.
 */
export const MOE_CUDA_WGMMA = 'MOE_CUDA_WGMMA';
export const CUDA_WGMMA_CHOICES = ['auto', 'on', 'off'] as const;

export function registerCudaFlags(): void {
  const env = tf.env();
  env.registerFlag(MOE_CUDA_PDL, () => true);
  let valid: string = 'default';
  env.registerFlag(MOE_CUDA_GEMM_TILES, () => 'default', value => {
    if ((CUDA_GEMM_TILE_CHOICES as readonly unknown[]).includes(value)) {
      valid = value as string;
    } else {
      env.set(MOE_CUDA_GEMM_TILES, valid);  // tfjs stores the value before this hook runs: put the last good one back
      throw new Error(`${MOE_CUDA_GEMM_TILES} must be one of ${CUDA_GEMM_TILE_CHOICES.join(', ')}, got ${describeValue(value)}`);
    }
  });
  let validWgmma: string = 'auto';
  env.registerFlag(MOE_CUDA_WGMMA, () => 'auto', value => {
    if ((CUDA_WGMMA_CHOICES as readonly unknown[]).includes(value)) {
      validWgmma = value as string;
    } else {
      env.set(MOE_CUDA_WGMMA, validWgmma);
      throw new Error(`${MOE_CUDA_WGMMA} must be one of ${CUDA_WGMMA_CHOICES.join(', ')}, got ${describeValue(value)}`);
    }
  });
}

let pushed: string | null = null;

/** Passes the flags' current values to the addon when they changed since the last push. */
export function syncCudaTuning(addon: CudaAddon): void {
  const env = tf.env();
  const pdl = env.getBool(MOE_CUDA_PDL);
  const gemmTiles = env.get(MOE_CUDA_GEMM_TILES) as string;
  const wgmma = env.get(MOE_CUDA_WGMMA) as string;
  const key = `${pdl}/${gemmTiles}/${wgmma}`;
  if (key === pushed) return;
  addon.setTuning({pdl, gemmTiles, wgmma});
  pushed = key;
}
