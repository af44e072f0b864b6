import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {BatchedGemmAttrs} from '../kernel_names.js';
import {select} from './routing_select_composite.js';
import {segmentBoundsComposite} from './segment_bounds_composite.js';

/** Gathered weight elements alive at once in the per-row formulation (64 MiB of float32). */
const GATHER_BUDGET = 1 << 24;

/**
 * Returns float32 [R,N] (docs/semantics.md section 4) without reading the segments back. Each row's expert is
 * the number of segment ends <= row ([R,E] compare); rows outside [offsets[0], offsets[E]) are 0.
 * Two formulations, chosen from static shapes (neither is fast: backends that matter have a kernel):
 * - per-row weights (E > 2): gather each row's expert matrix and run a batched [1,K]x[K,N] product, in row
 *   chunks holding at most GATHER_BUDGET weight elements. Work: the grouped GEMM's FLOPs plus a copy of
 *   R*K*N weights; memory: one chunk.
 * - per-expert loop (E <= 2, where the copy costs more than the wasted products): a full [R,K]x[K,N] matMul
 *   per expert, kept on that expert's rows. Work: E times the grouped GEMM's FLOPs; memory: O(R*N).
 */
export function batchedGemmComposite(
    lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, bias: Tensor2D | null, attrs: BatchedGemmAttrs): Tensor2D {
  const {transposeRhs, segmentsAreOffsets} = attrs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const n = transposeRhs ? rhs.shape[1] : rhs.shape[2];
  return tf.tidy(() => {
    if (numRows === 0) return tf.zeros([0, n]) as Tensor2D;
    if (k === 0) {
      // An empty sum (rows get their bias): as a zero product of depth 1, because tfjs's webgpu matMul with a zero
      // inner dimension returns uninitialized memory.
      const zeroRhs = tf.zeros(transposeRhs ? [numExperts, n, 1] : [numExperts, 1, n]) as Tensor3D;
      return batchedGemmComposite(tf.zeros([numRows, 1]), zeroRhs, segments, bias, attrs);
    }
    // Monotone bounds in [0, R] for any segments (section 4's rule for invalid ones), so each row has one expert.
    const offsets = segmentBoundsComposite(segments, segmentsAreOffsets, numRows);
    const row = tf.reshape(tf.range(0, numRows, 1, 'int32'), [numRows, 1]);
    const segmentEnds = tf.reshape(tf.slice(offsets, 1, numExperts), [1, numExperts]);
    const expertOfRow = tf.sum(tf.cast(tf.lessEqual(segmentEnds, row), 'int32'), 1);
    const inAnySegment = tf.logicalAnd(
        tf.greaterEqual(row, tf.slice(offsets, 0, 1)), tf.less(row, tf.slice(offsets, numExperts, 1)));
    const out = numExperts > 2 ?
        perRowWeights(lhs, rhs, bias, tf.minimum(expertOfRow, tf.scalar(numExperts - 1, 'int32')), transposeRhs, n) :
        perExpertLoop(lhs, rhs, bias, expertOfRow, transposeRhs, n);
    return select(inAnySegment, out, tf.scalar(0)) as Tensor2D;
  });
}

function perRowWeights(
    lhs: Tensor2D, rhs: Tensor3D, bias: Tensor2D | null, expert: Tensor, transposeRhs: boolean, n: number): Tensor {
  const [numRows, k] = lhs.shape;
  const rowsPerChunk = Math.max(1, Math.floor(GATHER_BUDGET / (k * n)));
  const chunks: Tensor[] = [];
  for (let r0 = 0; r0 < numRows; r0 += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, numRows - r0);
    // Per-chunk tidy: the gathered weights die with their chunk.
    chunks.push(tf.tidy(() => {
      const chunkExpert = tf.slice(expert, r0, rows);
      const weights = tf.gather(rhs, chunkExpert);  // [rows,K,N] or [rows,N,K]
      const chunkLhs = tf.reshape(tf.slice(lhs, [r0, 0], [rows, k]), [rows, 1, k]);
      const product = tf.reshape(tf.matMul(chunkLhs, weights, false, transposeRhs), [rows, n]);
      return bias == null ? product : tf.add(product, tf.gather(bias, chunkExpert));
    }));
  }
  return chunks.length === 1 ? chunks[0] : tf.concat(chunks, 0);
}

function perExpertLoop(
    lhs: Tensor2D, rhs: Tensor3D, bias: Tensor2D | null, expertOfRow: Tensor, transposeRhs: boolean,
    n: number): Tensor {
  const [numRows, k] = lhs.shape;
  const expertColumn = tf.reshape(expertOfRow, [numRows, 1]);
  let out: Tensor = tf.zeros([numRows, n]);
  for (let e = 0; e < rhs.shape[0]; e++) {
    // Per-expert tidy: only the running output survives an iteration.
    const next = tf.tidy(() => {
      const weights = tf.reshape(tf.slice(rhs, [e, 0, 0], [1, -1, -1]), transposeRhs ? [n, k] : [k, n]) as Tensor2D;
      let product: Tensor = tf.matMul(lhs, weights, false, transposeRhs);
      if (bias != null) product = tf.add(product, tf.slice(bias, [e, 0], [1, n]));
      return select(tf.equal(expertColumn, tf.scalar(e, 'int32')), product, out);
    });
    out.dispose();
    out = next;
  }
  return out;
}
