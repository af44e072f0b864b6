/**
 * Grouped GEMM over contiguous row segments on host arrays (docs/semantics.md section 4).
 * Accumulation is float64 (JS numbers), rounded to float32 once per output after the bias is added: the most
 * accurate choice and free in JS, where every multiply-add is f64 anyway.
 */

// Blocking: a packed K_TILE x N_TILE tile of one expert's weights (128 KiB of f32) stays in L2 while every row
// of a PANEL_ROWS panel streams over it.
const K_TILE = 128;
const N_TILE = 256;
const PANEL_ROWS = 64;

/**
 * Packs rhs[e][k0:k0+kLen, n0:n0+nLen] (read from the [E,N,K] layout when transposed) as groups of 4 columns,
 * each group kLen x 4 row-major, so the inner loop reads 4 consecutive weights per k step. A last partial
 * group is zero-filled (its extra columns are computed and never stored).
 */
function packTile(
    rhs: Float32Array, expertBase: number, k: number, n: number, transposeRhs: boolean, k0: number, kLen: number,
    n0: number, nLen: number, tile: Float32Array): void {
  const groups = Math.ceil(nLen / 4);
  tile.fill(0, 0, groups * kLen * 4);
  for (let nn = 0; nn < nLen; nn++) {
    const base = (nn >> 2) * kLen * 4 + (nn & 3);
    if (transposeRhs) {
      const src = expertBase + (n0 + nn) * k + k0;
      for (let kk = 0; kk < kLen; kk++) tile[base + kk * 4] = rhs[src + kk];
    } else {
      const src = expertBase + k0 * n + n0 + nn;
      for (let kk = 0; kk < kLen; kk++) tile[base + kk * 4] = rhs[src + kk * n];
    }
  }
}

/** acc[row r - panelStart, n0..n0+nLen) += lhs[r, k0..k0+kLen) @ tile, for r in [r0, r1). */
export function multiplyTile(
    lhs: Float32Array, k: number, r0: number, r1: number, panelStart: number, acc: Float64Array, n: number,
    tile: Float32Array, k0: number, kLen: number, n0: number, nLen: number): void {
  const groups = Math.ceil(nLen / 4);
  // 4x4 register tile: 16 multiply-adds per 8 loads, sums kept in locals across the k loop.
  const rEnd4 = r0 + ((r1 - r0) & ~3);
  for (let r = r0; r < rEnd4; r += 4) {
    const l0 = r * k + k0, l1 = l0 + k, l2 = l1 + k, l3 = l2 + k;
    for (let g = 0; g < groups; g++) {
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let kk = 0, t = g * kLen * 4; kk < kLen; kk++, t += 4) {
        const b0 = tile[t], b1 = tile[t + 1], b2 = tile[t + 2], b3 = tile[t + 3];
        const a0 = lhs[l0 + kk], a1 = lhs[l1 + kk], a2 = lhs[l2 + kk], a3 = lhs[l3 + kk];
        s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
        s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
        s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
        s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
      }
      const c = (r - panelStart) * n + n0 + g * 4;
      storeRow(acc, c, nLen - g * 4, s00, s01, s02, s03);
      storeRow(acc, c + n, nLen - g * 4, s10, s11, s12, s13);
      storeRow(acc, c + 2 * n, nLen - g * 4, s20, s21, s22, s23);
      storeRow(acc, c + 3 * n, nLen - g * 4, s30, s31, s32, s33);
    }
  }
  for (let r = rEnd4; r < r1; r++) {
    const l = r * k + k0;
    for (let g = 0; g < groups; g++) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let kk = 0, t = g * kLen * 4; kk < kLen; kk++, t += 4) {
        const a = lhs[l + kk];
        s0 += a * tile[t]; s1 += a * tile[t + 1]; s2 += a * tile[t + 2]; s3 += a * tile[t + 3];
      }
      storeRow(acc, (r - panelStart) * n + n0 + g * 4, nLen - g * 4, s0, s1, s2, s3);
    }
  }
}

/** acc[c .. c+4) += s0..s3, only the first `valid` of them (the tile's last column group may be partial). */
function storeRow(acc: Float64Array, c: number, valid: number, s0: number, s1: number, s2: number, s3: number): void {
  acc[c] += s0;
  if (valid > 1) acc[c + 1] += s1;
  if (valid > 2) acc[c + 2] += s2;
  if (valid > 3) acc[c + 3] += s3;
}

/** Fills `tile` with expert e's weights [k0, k0+kLen) x [n0, n0+nLen) in multiplyTile's 4-column groups. */
export type PackTile = (e: number, k0: number, kLen: number, n0: number, nLen: number, tile: Float32Array) => void;

/**
 * The blocked grouped GEMM over weight tiles that `pack` provides (float32 rhs, or packed codes decoded per tile):
 * out[r] = lhs[r] @ W[e] (+ bias[e]) for r in [offsets[e], offsets[e+1]); other rows are 0.
 */
export function groupedGemmTiles(
    lhs: Float32Array, numRows: number, k: number, numExperts: number, n: number, offsets: Int32Array,
    bias: Float32Array | null, pack: PackTile): Float32Array {
  const out = new Float32Array(numRows * n);
  const acc = new Float64Array(PANEL_ROWS * n);
  const tile = new Float32Array(K_TILE * N_TILE);
  for (let e = 0; e < numExperts; e++) {
    const segStart = offsets[e], segEnd = offsets[e + 1];
    for (let p0 = segStart; p0 < segEnd; p0 += PANEL_ROWS) {
      const p1 = Math.min(p0 + PANEL_ROWS, segEnd);
      acc.fill(0, 0, (p1 - p0) * n);
      for (let k0 = 0; k0 < k; k0 += K_TILE) {
        const kLen = Math.min(K_TILE, k - k0);
        for (let n0 = 0; n0 < n; n0 += N_TILE) {
          const nLen = Math.min(N_TILE, n - n0);
          pack(e, k0, kLen, n0, nLen, tile);
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

/**
 * out[r] = lhs[r] @ rhs[e] (+ bias[e]) for r in [offsets[e], offsets[e+1]); other rows are 0.
 * lhs [numRows,k]; rhs [E,k,n] or, with transposeRhs, [E,n,k]; bias [E,n]; offsets validated by segmentOffsets.
 */
export function batchedGemmImpl(
    lhs: Float32Array, numRows: number, k: number, rhs: Float32Array, numExperts: number, n: number,
    offsets: Int32Array, transposeRhs: boolean, bias: Float32Array | null): Float32Array {
  return groupedGemmTiles(lhs, numRows, k, numExperts, n, offsets, bias, (e, k0, kLen, n0, nLen, tile) =>
      packTile(rhs, e * k * n, k, n, transposeRhs, k0, kLen, n0, nLen, tile));
}
