import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {MoePermuteAttrs, permutedRowCount} from '../kernel_names.js';
import {select} from './routing_select_composite.js';
import {stopGradient} from './stop_gradient.js';

/**
 * Returns [permutedX [R,D], tokensPerExpert int32 [E], expertOffsets int32 [E+1], rowMap int32 [T,k]]
 * (docs/semantics.md section 3), with no data read: every shape is static.
 *
 * Forward map (rowMap): a (token, slot) entry of expert e lands at expertOffsets[e] + the number of earlier
 * entries of e (an exclusive cumsum of the one-hot ids, [T*k,E]).
 * Inverse map (which entry fills row r): a full tf.topk over the entries' unpadded sorted positions (keys
 * < 2*T*k, exact in float32) lists the entries in row order; each row finds its expert by counting segment
 * ends <= r ([R,E]) and gathers. A sort instead of tf.scatterND because webgl's scatter loops over all updates
 * per output element (quadratic).
 * Ids outside [0,E) contribute to no expert, fill no row and get rowMap = -1, the one "no row" sentinel of
 * every path (webgpu and cuda write -1 too; docs/semantics.md section 3): nothing is read or written out of bounds.
 */
/** JS numbers in tfjs arithmetic become float32 and upcast int32 operands: keep index math int32. */
const int = (v: number) => tf.scalar(v, 'int32');

export function moePermuteComposite(x: Tensor2D, topkIds: Tensor2D, attrs: MoePermuteAttrs,
                                    weights: Tensor2D | null = null): [Tensor2D, Tensor1D, Tensor1D, Tensor2D] {
  const {numExperts, alignment} = attrs;
  const [numTokens, hidden] = x.shape;
  const topK = topkIds.shape[1];
  const numRows = permutedRowCount(numTokens, topK, numExperts, alignment);
  const numEntries = numTokens * topK;
  return tf.tidy(() => {
    if (numEntries === 0) {
      return [
        tf.zeros([numRows, hidden], x.dtype), tf.zeros([numExperts], 'int32'), tf.zeros([numExperts + 1], 'int32'),
        tf.zeros([numTokens, topK], 'int32'),
      ] as [Tensor2D, Tensor1D, Tensor1D, Tensor2D];
    }
    // Ids are not differentiable (they may come from a router on the tape): only x's gather carries a gradient.
    const ids = tf.reshape(stopGradient(topkIds), [numEntries]) as Tensor1D;
    const valid = tf.logicalAnd(tf.greaterEqual(ids, int(0)), tf.less(ids, int(numExperts)));
    // One-hot by comparison (tf.oneHot refuses depth 1): all zero for an invalid id.
    const expertIndex = tf.reshape(tf.range(0, numExperts, 1, 'int32'), [1, numExperts]);
    const oneHot = tf.cast(tf.equal(tf.reshape(ids, [numEntries, 1]), expertIndex), 'int32');
    const tokensPerExpert = tf.sum(oneHot, 0) as Tensor1D;
    const padded = alignment === 1 ?
        tokensPerExpert :
        tf.mul(tf.floorDiv(tf.add(tokensPerExpert, int(alignment - 1)), int(alignment)), int(alignment));
    const zero = tf.zeros([1], 'int32');
    const expertOffsets = tf.concat([zero, tf.cumsum(padded)]) as Tensor1D;
    const segmentStarts = tf.slice(expertOffsets, 0, numExperts);
    const unpaddedStarts = tf.slice(tf.concat([zero, tf.cumsum(tokensPerExpert)]), 0, numExperts);

    // Entries of the same expert before this one: exact in int32.
    const rank = tf.sum(tf.mul(tf.cumsum(oneHot, 0, true), oneHot), 1);
    const sumOverExpert = (perExpert: Tensor) => tf.sum(tf.mul(oneHot, tf.reshape(perExpert, [1, numExperts])), 1);
    const rowMap = select(valid, tf.add(sumOverExpert(segmentStarts), rank), int(-1));

    // Entries in row order: sort by unpadded position; invalid entries after every valid one.
    const entryIndex = tf.range(0, numEntries, 1, 'int32');
    const sortKey = select(valid, tf.add(sumOverExpert(unpaddedStarts), rank), tf.add(entryIndex, int(numEntries)));
    const entriesInOrder = tf.topk(tf.neg(tf.cast(sortKey, 'float32')), numEntries).indices;

    const row = tf.reshape(tf.range(0, numRows, 1, 'int32'), [numRows, 1]);
    const segmentEnds = tf.reshape(tf.slice(expertOffsets, 1, numExperts), [1, numExperts]);
    const expertOfRow = tf.sum(tf.cast(tf.lessEqual(segmentEnds, row), 'int32'), 1);  // E past the last segment
    const expert = tf.minimum(expertOfRow, int(numExperts - 1));
    const inSegment = tf.sub(tf.reshape(row, [numRows]), tf.gather(segmentStarts, expert));
    const filled = tf.logicalAnd(
        tf.logicalAnd(tf.less(expertOfRow, int(numExperts)), tf.greaterEqual(inSegment, int(0))),
        tf.less(inSegment, tf.gather(tokensPerExpert, expert)));
    const sortedPosition = tf.clipByValue(tf.add(tf.gather(unpaddedStarts, expert), inSegment), 0, numEntries - 1);
    const entry = tf.gather(entriesInOrder, sortedPosition);
    const token = tf.floorDiv(entry, int(topK));
    let rows: Tensor = tf.gather(x, token);
    if (weights != null) rows = tf.mul(rows, tf.reshape(tf.gather(tf.reshape(weights, [numEntries]), entry), [numRows, 1]));
    const permutedX = select(tf.reshape(filled, [numRows, 1]), rows, tf.scalar(0, x.dtype));

    return [
      permutedX, tokensPerExpert, tf.cast(expertOffsets, 'int32'), tf.reshape(tf.cast(rowMap, 'int32'), [numTokens, topK]),
    ] as [Tensor2D, Tensor1D, Tensor1D, Tensor2D];
  });
}
