/** Dispatch on host arrays (docs/semantics.md section 3): a stable counting sort of (token, slot) rows by expert. */
import {checkExpertIds} from '../host_index_checks.js';
import {permutedRowCount} from '../kernel_names.js';

export function moePermuteImpl(
    x: Float32Array, numTokens: number, hidden: number, topkIds: Int32Array, topK: number, numExperts: number,
    alignment: number, weights: Float32Array | null = null): {
  permutedX: Float32Array, numRows: number, tokensPerExpert: Int32Array, expertOffsets: Int32Array, rowMap: Int32Array
} {
  checkExpertIds(topkIds.subarray(0, numTokens * topK), topK, numExperts);
  const tokensPerExpert = new Int32Array(numExperts);
  for (let i = 0; i < numTokens * topK; i++) tokensPerExpert[topkIds[i]]++;

  const expertOffsets = new Int32Array(numExperts + 1);
  for (let e = 0; e < numExperts; e++) {
    const padded = Math.ceil(tokensPerExpert[e] / alignment) * alignment;
    expertOffsets[e + 1] = expertOffsets[e] + padded;
  }

  const numRows = permutedRowCount(numTokens, topK, numExperts, alignment);
  // Zero-filled: rows past the used ones and alignment padding must read as 0.
  const permutedX = new Float32Array(numRows * hidden);
  const rowMap = new Int32Array(numTokens * topK);
  const cursor = expertOffsets.slice(0, numExperts);
  // Scanning (token, slot) in order makes the sort stable: ascending token within each expert.
  for (let i = 0; i < numTokens * topK; i++) {
    const row = cursor[topkIds[i]]++;
    rowMap[i] = row;
    const token = Math.floor(i / topK);
    if (weights == null) {
      permutedX.set(x.subarray(token * hidden, (token + 1) * hidden), row * hidden);
    } else {
      const w = weights[i];
      for (let d = 0; d < hidden; d++) permutedX[row * hidden + d] = x[token * hidden + d] * w;
    }
  }
  return {permutedX, numRows, tokensPerExpert, expertOffsets, rowMap};
}
