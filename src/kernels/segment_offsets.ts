/**
 * The segment check of every kernel that holds a grouped GEMM's segments on the host (cpu, wasm through the cpu
 * kernels, the cuda op kernels): docs/semantics.md section 4's preconditions, as an Error naming the op.
 */

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
