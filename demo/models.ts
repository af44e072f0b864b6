/**
 * The model shapes a user picks from (the shared table demo/model_shapes.js, also used by `npm run demo` and the
 * benchmarks). A full layer does not fit a page (Qwen3-30B-A3B's experts alone are 1.6 GB per layer in f32), so
 * hidden and intermediate sizes are divided by a width divisor while everything that shapes the routing stays
 * real: expert count, top-k, groups, scaling, shared experts.
 */
import type {FusedMoEArgs} from 'tfjs-moe';

import {MODEL_SHAPES, ModelShape, scaledModel} from './model_shapes.js';

export type {ModelShape};
export const MODELS: ModelShape[] = MODEL_SHAPES;

export const DIVISORS = [1, 2, 4, 8, 16, 32, 64, 128];
export const TOKEN_COUNTS = [1, 4, 16, 64, 256];

/** Layer arguments and hidden size for a model at a width divisor. */
export function scaledShape(m: ModelShape, divisor: number): {hidden: number, args: FusedMoEArgs} {
  return scaledModel(m, divisor);
}

/** The page's option label of a model. */
export function modelLabel(m: ModelShape): string {
  return `${m.label} (${m.detail})`;
}
