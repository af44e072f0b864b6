/**
 * Grouped GEMM over contiguous row segments on host arrays (semantics doc section 4).
 * Accumulation is float64 (JS numbers), rounded to float32 once per output after the bias is added: the most
 * accurate choice and free in JS, where every multiply-add is f64 anyway.
 */

/**
 * Turns `segments` (expertOffsets [E+1], or tokensPerExpert [E] packed from row 0) into offsets [E+1],
 * rejecting anything that would address rows outside [0, numRows).
 */
export function segmentOffsets(
    segments: Int32Array, segmentsAreOffsets: boolean, numExperts: number, numRows: number): Int32Array {
  if (segmentsAreOffsets) {
    for (let e = 0; e <= numExperts; e++) {
      const v = segments[e];
      if (v < 0 || v > numRows) {
        throw new Error(`batchedGemm: argument 'segments' (expertOffsets) must hold offsets in [0, R = ${numRows}], ` +
            `got segments[${e}] = ${v}`);
      }
      if (e > 0 && v < segments[e - 1]) {
        throw new Error(`batchedGemm: argument 'segments' (expertOffsets) must be non-decreasing, ` +
            `got segments[${e}] = ${v} < segments[${e - 1}] = ${segments[e - 1]}`);
      }
    }
    return segments;
  }
  const offsets = new Int32Array(numExperts + 1);
  for (let e = 0; e < numExperts; e++) {
    const count = segments[e];
    if (count < 0) {
      throw new Error(`batchedGemm: argument 'segments' (tokensPerExpert) must hold non-negative counts, ` +
          `got segments[${e}] = ${count}`);
    }
    const end = offsets[e] + count;
    if (end > numRows) {
      throw new Error(`batchedGemm: argument 'segments' (tokensPerExpert) must sum to at most R = ${numRows}, ` +
          `got a running sum of ${end} at segments[${e}] = ${count}`);
    }
    offsets[e + 1] = end;
  }
  return offsets;
}

// Blocking: a packed K_TILE x N_TILE tile of one expert's weights (128 KiB of f32) stays in L2 while every row
// of a PANEL_ROWS panel streams over it; 4 rows at a time reuse each loaded weight 4 times.
const K_TILE = 128;
const N_TILE = 256;
const PANEL_ROWS = 64;

/** Copies rhs[e][k0:k0+kLen, n0:n0+nLen] (reading the [E,N,K] layout when transposed) into tile, row-major. */
function packTile(
    rhs: Float32Array, expertBase: number, k: number, n: number, transposeRhs: boolean, k0: number, kLen: number,
    n0: number, nLen: number, tile: Float32Array): void {
  if (transposeRhs) {
    for (let nn = 0; nn < nLen; nn++) {
      const src = expertBase + (n0 + nn) * k + k0;
      for (let kk = 0; kk < kLen; kk++) tile[kk * nLen + nn] = rhs[src + kk];
    }
  } else {
    for (let kk = 0; kk < kLen; kk++) {
      const src = expertBase + (k0 + kk) * n + n0;
      tile.set(rhs.subarray(src, src + nLen), kk * nLen);
    }
  }
}

/** acc[rows r0..r1 of the panel, n0..n0+nLen) += lhs[r, k0..k0+kLen) @ tile. */
function multiplyTile(
    lhs: Float32Array, k: number, r0: number, r1: number, panelStart: number, acc: Float64Array, n: number,
    tile: Float32Array, k0: number, kLen: number, n0: number, nLen: number): void {
  let r = r0;
  for (; r + 4 <= r1; r += 4) {
    const acc0 = (r - panelStart) * n + n0, acc1 = acc0 + n, acc2 = acc1 + n, acc3 = acc2 + n;
    const lhs0 = r * k + k0, lhs1 = lhs0 + k, lhs2 = lhs1 + k, lhs3 = lhs2 + k;
    for (let kk = 0; kk < kLen; kk++) {
      const a0 = lhs[lhs0 + kk], a1 = lhs[lhs1 + kk], a2 = lhs[lhs2 + kk], a3 = lhs[lhs3 + kk];
      const t = kk * nLen;
      for (let nn = 0; nn < nLen; nn++) {
        const b = tile[t + nn];
        acc[acc0 + nn] += a0 * b;
        acc[acc1 + nn] += a1 * b;
        acc[acc2 + nn] += a2 * b;
        acc[acc3 + nn] += a3 * b;
      }
    }
  }
  for (; r < r1; r++) {
    const accRow = (r - panelStart) * n + n0;
    const lhsRow = r * k + k0;
    for (let kk = 0; kk < kLen; kk++) {
      const a = lhs[lhsRow + kk];
      const t = kk * nLen;
      for (let nn = 0; nn < nLen; nn++) acc[accRow + nn] += a * tile[t + nn];
    }
  }
}

/**
 * out[r] = lhs[r] @ rhs[e] (+ bias[e]) for r in [offsets[e], offsets[e+1]); other rows are 0.
 * lhs [numRows,k]; rhs [E,k,n] or, with transposeRhs, [E,n,k]; bias [E,n]; offsets validated by segmentOffsets.
 */
export function batchedGemmImpl(
    lhs: Float32Array, numRows: number, k: number, rhs: Float32Array, numExperts: number, n: number,
    offsets: Int32Array, transposeRhs: boolean, bias: Float32Array | null): Float32Array {
  const out = new Float32Array(numRows * n);
  const acc = new Float64Array(PANEL_ROWS * n);
  const tile = new Float32Array(K_TILE * N_TILE);
  for (let e = 0; e < numExperts; e++) {
    const segStart = offsets[e], segEnd = offsets[e + 1];
    const expertBase = e * k * n;
    for (let p0 = segStart; p0 < segEnd; p0 += PANEL_ROWS) {
      const p1 = Math.min(p0 + PANEL_ROWS, segEnd);
      acc.fill(0, 0, (p1 - p0) * n);
      for (let k0 = 0; k0 < k; k0 += K_TILE) {
        const kLen = Math.min(K_TILE, k - k0);
        for (let n0 = 0; n0 < n; n0 += N_TILE) {
          const nLen = Math.min(N_TILE, n - n0);
          packTile(rhs, expertBase, k, n, transposeRhs, k0, kLen, n0, nLen, tile);
          multiplyTile(lhs, k, p0, p1, p0, acc, n, tile, k0, kLen, n0, nLen);
        }
      }
      for (let r = p0; r < p1; r++) {
        const accRow = (r - p0) * n;
        for (let j = 0; j < n; j++) {
          out[r * n + j] = bias == null ? acc[accRow + j] : acc[accRow + j] + bias[e * n + j];
        }
      }
    }
  }
  return out;
}
