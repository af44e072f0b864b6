/** Dispatch on host arrays (docs/semantics.md section 3): a stable counting sort of (token, slot) rows by expert. */
import {checkExpertIds} from '../host_index_checks.js';
import {permutedRowCount} from '../kernel_names.js';

/** Where each (token, slot) goes: the permutation without the rows' data. */
export interface MoePermuteIndex {
  numRows: number;
  tokensPerExpert: Int32Array;
  expertOffsets: Int32Array;
  /** [T*k]: the permuted row of each (token, slot), -1 for an identity expert's slot. */
  rowMap: Int32Array;
}

/** The sort alone (moePermuteImpl's indices): the cpu layer forward gathers the rows itself into wasm memory. */
export function moePermuteIndex(topkIds: Int32Array, numTokens: number, topK: number, numExperts: number,
                                alignment: number, zeroExperts = 0): MoePermuteIndex {
  checkExpertIds(topkIds.subarray(0, numTokens * topK), topK, numExperts, zeroExperts);
  const tokensPerExpert = new Int32Array(numExperts);
  for (let i = 0; i < numTokens * topK; i++) if (topkIds[i] < numExperts) tokensPerExpert[topkIds[i]]++;

  const expertOffsets = new Int32Array(numExperts + 1);
  for (let e = 0; e < numExperts; e++) {
    const padded = Math.ceil(tokensPerExpert[e] / alignment) * alignment;
    expertOffsets[e + 1] = expertOffsets[e] + padded;
  }

  const numRows = permutedRowCount(numTokens, topK, numExperts, alignment);
  const rowMap = new Int32Array(numTokens * topK);
  const cursor = expertOffsets.slice(0, numExperts);
  // Scanning (token, slot) in order makes the sort stable: ascending token within each expert.
  for (let i = 0; i < numTokens * topK; i++) {
    // An identity expert (id >= numExperts, section 11.5): no row, the "no row" sentinel.
    rowMap[i] = topkIds[i] >= numExperts ? -1 : cursor[topkIds[i]]++;
  }
  return {numRows, tokensPerExpert, expertOffsets, rowMap};
}

export function moePermuteImpl(
    x: Float32Array, numTokens: number, hidden: number, topkIds: Int32Array, topK: number, numExperts: number,
    alignment: number, weights: Float32Array | null = null, zeroExperts = 0): {
  permutedX: Float32Array, numRows: number, tokensPerExpert: Int32Array, expertOffsets: Int32Array, rowMap: Int32Array
} {
  const index = moePermuteIndex(topkIds, numTokens, topK, numExperts, alignment, zeroExperts);
  const {numRows, rowMap} = index;
  // Zero-filled: rows past the used ones and alignment padding must read as 0.
  const permutedX = new Float32Array(numRows * hidden);
  for (let i = 0; i < numTokens * topK; i++) {
    const row = rowMap[i];
    if (row < 0) continue;
    const token = Math.floor(i / topK);
    if (weights == null) {
      permutedX.set(x.subarray(token * hidden, (token + 1) * hidden), row * hidden);
    } else {
      const w = weights[i];
      for (let d = 0; d < hidden; d++) permutedX[row * hidden + d] = x[token * hidden + d] * w;
    }
  }
  return {permutedX, ...index};
}
