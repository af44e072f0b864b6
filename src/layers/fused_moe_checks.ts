/**
 * FusedMoE argument checks beyond the option values (fused_moe_config.ts): unknown keys (with a "did you mean"),
 * size limits, setNamedWeights entries, the input tensor, what an executor returns, and weights that live on a
 * backend the call cannot read from. Every error names the argument, what was expected and what came.
 */
import * as tf from '@tensorflow/tfjs-core';

import {describeValue, MAX_INT32} from '../ops/limits.js';
import {OPTION_KEYS, WeightSpec} from './fused_moe_config.js';
import {LOAD_BALANCING_KEYS} from './load_balancing.js';

/** tfjs-layers' LayerArgs (and what Layer.getConfig() adds), accepted beside the MoE options. */
const LAYER_ARG_KEYS = ['inputShape', 'batchInputShape', 'batchSize', 'dtype', 'name', 'trainable', 'weights', 'inputDType'];
const INITIALIZER_KEYS = ['kernelInitializer', 'biasInitializer'];
/** A function, not a constant: fused_moe_config imports this module, so its keys are not defined at load yet. */
export function fusedMoeArgKeys(): readonly string[] {
  return [...OPTION_KEYS, ...LOAD_BALANCING_KEYS, ...INITIALIZER_KEYS, ...LAYER_ARG_KEYS];
}

function normalized(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, '');
}

function editDistance(a: string, b: string): number {
  const row = Array.from({length: b.length + 1}, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The known key a typo most likely meant ('num_experts' -> 'numExperts', 'topkmethod' -> 'topkMethod'). */
export function closestKey(key: string, known: readonly string[]): string | null {
  const n = normalized(key);
  let best: string | null = null, bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(n, normalized(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(n.length / 4)) ? best : null;
}

/** Rejects keys that are neither MoE, balancing, initializer nor LayerArgs keys (typos used to be ignored). */
export function checkArgKeys(args: object): void {
  const known = fusedMoeArgKeys();
  for (const key of Object.keys(args)) {
    if (known.includes(key)) continue;
    const hint = closestKey(key, known);
    throw new Error(`FusedMoE: unknown option '${key}'${hint == null ? '' : ` (did you mean '${hint}'?)`}; ` +
        `options are ${[...OPTION_KEYS, ...LOAD_BALANCING_KEYS, ...INITIALIZER_KEYS].join(', ')} and the tf.layers ` +
        `LayerArgs (${LAYER_ARG_KEYS.join(', ')})`);
  }
}

/** Every weight's element count must fit int32 (the kernels' index type), checked before any is allocated. */
export function checkWeightSizes(layerName: string, specs: WeightSpec[]): void {
  for (const spec of specs) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    if (count > MAX_INT32) {
      throw new Error(`FusedMoE '${layerName}': weight '${spec.name}' of shape [${spec.shape}] would hold ${count} ` +
          `elements, above the maximum ${MAX_INT32} (int32 indexing): reduce numExperts or the sizes`);
    }
  }
}

/**
 * setNamedWeights' argument, checked entirely before anything is written (all or nothing): an object of known
 * names -> live float32 tf.Tensors of the weight's shape (null/undefined entries are skipped).
 */
export function checkNamedWeights(layerName: string, values: unknown, shapes: Map<string, readonly number[]>):
    Array<[string, tf.Tensor]> {
  const who = `FusedMoE '${layerName}': setNamedWeights`;
  if (values == null || typeof values !== 'object' || Array.isArray(values) || values instanceof tf.Tensor) {
    throw new Error(`${who}: argument 'values' must be an object of weight name -> tf.Tensor, got ${describeValue(values)}`);
  }
  const out: Array<[string, tf.Tensor]> = [];
  for (const [name, value] of Object.entries(values)) {
    const shape = shapes.get(name);
    if (shape == null) {
      const hint = closestKey(name, [...shapes.keys()]);
      throw new Error(`${who}: no weight '${name}'${hint == null ? '' : ` (did you mean '${hint}'?)`} (weights: ${
          [...shapes.keys()].join(', ')})`);
    }
    if (value == null) continue;
    const expected = `a float32 tf.Tensor of shape [${shape}]`;
    if (!(value instanceof tf.Tensor)) throw new Error(`${who}: weight '${name}' must be ${expected}, got ${describeValue(value)}`);
    if (value.isDisposed) throw new Error(`${who}: weight '${name}' must be ${expected}, got a disposed tensor`);
    if (value.dtype !== 'float32' || !tf.util.arraysEqual(value.shape, shape as number[])) {
      throw new Error(`FusedMoE '${layerName}': weight '${name}' must be float32 [${shape}], got ${value.dtype} [${value.shape}]`);
    }
    out.push([name, value]);
  }
  return out;
}

/** call()'s input: a live float32 tensor (a disposed one used to fail deep inside tfjs). */
export function checkInput(layerName: string, x: unknown): void {
  if (!(x instanceof tf.Tensor)) {
    throw new Error(`FusedMoE '${layerName}': input must be a float32 tf.Tensor [T,H] or [B,S,H], got ${describeValue(x)}`);
  }
  if (x.isDisposed) throw new Error(`FusedMoE '${layerName}': input must be a live tf.Tensor, got a disposed tensor`);
}

/** What a forward (a kernel path or a registered executor) returned must be float32 [T,H]. */
export function checkForwardOutput(layerName: string, path: string, y: unknown, numTokens: number, hidden: number): void {
  const ok = y instanceof tf.Tensor && !y.isDisposed && y.dtype === 'float32' && y.rank === 2 &&
      y.shape[0] === numTokens && y.shape[1] === hidden;
  if (!ok) {
    throw new Error(`FusedMoE '${layerName}': the forward of path '${path}' must return a float32 tensor of shape ` +
        `[${numTokens},${hidden}], got ${describeValue(y)}`);
  }
}
