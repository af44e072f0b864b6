/**
 * The index checks of every kernel that holds ids, rowMap or segments on the host (cpu, wasm through the cpu
 * kernels, the cuda op kernels): docs/semantics.md's preconditions (common rules, sections 3, 4 and 6) as an
 * Error naming the op, the argument, the entry and the value. Device paths never call them: they follow the
 * documented rule for invalid values instead.
 */

/** topkIds [T*k] of moePermute: every id in [0, numExperts). */
export function checkExpertIds(topkIds: Int32Array, topK: number, numExperts: number): void {
  for (let i = 0; i < topkIds.length; i++) {
    const e = topkIds[i];
    if (!(e >= 0 && e < numExperts)) {
      throw new Error(`moePermute: argument 'topkIds' must hold expert ids in [0, numExperts = ${numExperts}), ` +
          `got topkIds[${Math.floor(i / topK)},${i % topK}] = ${e}`);
    }
  }
}

/** rowMap [T*k] of moeCombine in [0, numRows); with a bias (numExperts its rows), topkIds in [0, numExperts). */
export function checkCombineIndices(rowMap: Int32Array, topkIds: Int32Array, topK: number, numRows: number,
                                    numExperts: number | null): void {
  for (let i = 0; i < rowMap.length; i++) {
    const row = rowMap[i];
    if (!(row >= 0 && row < numRows)) {
      throw new Error(`moeCombine: argument 'rowMap' must hold rows of y in [0, R = ${numRows}), ` +
          `got rowMap[${Math.floor(i / topK)},${i % topK}] = ${row}`);
    }
    const e = topkIds[i];
    if (numExperts != null && !(e >= 0 && e < numExperts)) {
      throw new Error(`moeCombine: argument 'topkIds' must hold expert ids in [0, E = ${numExperts}) ` +
          `(the rows of downProjBias), got topkIds[${Math.floor(i / topK)},${i % topK}] = ${e}`);
    }
  }
}

/**
 * Turns `segments` (expertOffsets [E+1], or tokensPerExpert [E] packed from row 0) into offsets [E+1],
 * rejecting, in the words of `op` (the op whose kernel reads them), anything that would address rows outside
 * [0, numRows) or overlap segments (docs/semantics.md section 4). Every kernel that holds the segments on the host
 * (cpu, wasm, the cuda op kernels) calls it.
 */
export function segmentOffsets(
    op: string, segments: Int32Array, segmentsAreOffsets: boolean, numExperts: number, numRows: number): Int32Array {
  if (segmentsAreOffsets) {
    for (let e = 0; e <= numExperts; e++) {
      const v = segments[e];
      if (v < 0 || v > numRows) {
        throw new Error(`${op}: argument 'segments' (expertOffsets) must hold offsets in [0, R = ${numRows}], ` +
            `got segments[${e}] = ${v}`);
      }
      if (e > 0 && v < segments[e - 1]) {
        throw new Error(`${op}: argument 'segments' (expertOffsets) must be non-decreasing, ` +
            `got segments[${e}] = ${v} < segments[${e - 1}] = ${segments[e - 1]}`);
      }
    }
    return segments;
  }
  const offsets = new Int32Array(numExperts + 1);
  for (let e = 0; e < numExperts; e++) {
    const count = segments[e];
    if (count < 0) {
      throw new Error(`${op}: argument 'segments' (tokensPerExpert) must hold non-negative counts, ` +
          `got segments[${e}] = ${count}`);
    }
    const end = offsets[e] + count;
    if (end > numRows) {
      throw new Error(`${op}: argument 'segments' (tokensPerExpert) must sum to at most R = ${numRows}, ` +
          `got a running sum of ${end} at segments[${e}] = ${count}`);
    }
    offsets[e + 1] = end;
  }
  return offsets;
}
