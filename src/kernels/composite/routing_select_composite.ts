/**
 * The routers' selection rule from stock tfjs ops: the k largest keys per row in descending order, ties to the
 * lower index, NaN never wins (it ranks below -Infinity; a NaN is chosen only when nothing else is left). tf.topk's tie order differs between backends (cpu is index-stable, webgl's
 * bitonic sort is not), so instead this takes k rounds of exact reductions: a row max, then the lowest index
 * holding it among the entries still available. Max, min, equal and where are exact on every backend, so every
 * backend selects the same experts. Cost: ~7 elementwise/reduce ops over [T,n] per round, k rounds.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {stopGradient} from './stop_gradient.js';

/** tf.where with its broadcasting, typed loosely (tfjs types both branches as the same rank). */
export function select(condition: Tensor, a: Tensor, b: Tensor): Tensor {
  return tf.where(condition, a as Tensor2D, b as Tensor2D);
}

/**
 * Returns the chosen indices as float32 [T,k] (exact: n < 2^24) and the mask of chosen entries, bool [T,n].
 * With `eligible` (bool [T,n]) only its true entries compete: a NaN among them beats every ineligible entry.
 */
export function selectTopKComposite(selectionKeys: Tensor2D, k: number, eligible: Tensor | null = null):
    {ids: Tensor2D, chosen: Tensor2D} {
  // Choosing is not differentiable: the weights' gradient flows through what is gathered at the ids, not here.
  const keys = stopGradient(selectionKeys);
  const [numRows, n] = keys.shape;
  const minusInf = tf.scalar(-Infinity);
  const index = tf.reshape(tf.range(0, n, 1, 'float32'), [1, n]);
  const none = tf.scalar(n, 'float32');
  const isNumber = tf.logicalNot(tf.isNaN(keys));
  const clean = select(isNumber, keys, minusInf);
  let available: Tensor = eligible ?? tf.cast(tf.ones([numRows, n]), 'bool');
  const initiallyAvailable = available;
  const picks: Tensor[] = [];
  for (let slot = 0; slot < k; slot++) {
    const masked = select(available, clean, minusInf);
    const best = tf.max(masked, 1, true);
    const isBest = tf.logicalAnd(tf.logicalAnd(available, isNumber), tf.equal(masked, best));
    const bestPick = tf.min(select(isBest, index, none), 1, true);
    // Only NaN left: the lowest available index.
    const anyPick = tf.min(select(available, index, none), 1, true);
    const pick = select(tf.less(bestPick, none), bestPick, anyPick);
    picks.push(pick);
    available = tf.logicalAnd(available, tf.notEqual(index, pick));
  }
  return {ids: tf.concat(picks, 1) as Tensor2D, chosen: tf.logicalAnd(initiallyAvailable, tf.logicalNot(available)) as Tensor2D};
}

/**
 * values[t, ids[t,j]] for the float32 ids [T,k] returned above, as one flat gather at t*n + id: tfjs's gradient
 * of a batched gather (batchDims 1) runs one small gather gradient per row, a flat one is a single segment sum.
 */
export function takeAlongRows(values: Tensor2D, ids: Tensor2D): Tensor2D {
  const [numRows, n] = values.shape;
  const rowStart = tf.reshape(tf.range(0, numRows * n, n, 'int32'), [numRows, 1]);
  const flatIndex = tf.add(rowStart, tf.cast(stopGradient(ids), 'int32'));
  return tf.reshape(tf.gather(tf.reshape(values, [-1]), tf.reshape(flatIndex, [-1])), ids.shape) as Tensor2D;
}
