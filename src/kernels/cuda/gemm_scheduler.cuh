// Grouped GEMM tile scheduler: which expert and rows a block computes, found on the device; the row gather.
#pragma once

#include "grouped_gemm.h"

namespace moe {
namespace gemm {

struct RowTile {
  int expert;
  int rowStart;
  int rowEnd;  // end of the expert's segment (exclusive)
  bool valid;
};

template <int BM>
__device__ __forceinline__ RowTile findRowTile(const GemmProblem& p, int tileIdx) {
  RowTile t{0, 0, 0, false};
  if (p.seg.offsets == nullptr) {
    t.rowStart = tileIdx * BM;
    t.rowEnd = p.M;
    t.valid = t.rowStart < p.M;
    return t;
  }
  const int numExperts = p.seg.numExperts;
  const int* prefix = p.seg.tilePrefix + tileClassOf(BM) * (numExperts + 1);
  // Through L2 (__ldcg): with GemmProblem.preloadB this runs before the wait for the previous kernel.
  if (tileIdx >= __ldcg(prefix + numExperts)) return t;
  // The last expert whose first tile is at or before tileIdx; empty experts share their successor's prefix
  // and so are never chosen.
  int lo = 0, hi = numExperts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldcg(prefix + mid) <= tileIdx) lo = mid; else hi = mid - 1;
  }
  t.expert = lo;
  t.rowStart = __ldcg(p.seg.offsets + lo) + (tileIdx - __ldcg(prefix + lo)) * BM;
  t.rowEnd = min(__ldcg(p.seg.offsets + lo + 1), p.M);
  t.valid = t.rowStart < t.rowEnd;
  return t;
}

__device__ __forceinline__ int sourceRow(const GemmProblem& p, int r) {
  if (p.aRowIndex == nullptr) return r;
  const int v = p.aRowIndex[r];
  return v < 0 ? -1 : v / p.aRowDiv;
}

// The per-thread row gather, written once for both cores: the lhs rows (through the optional row index: the
// permute's rowSource, so the gathered [R,K] copy never exists) and the weight rows a thread loads are the same
// for every k step, so they are resolved once per tile. ITERS chunks per thread of NT threads, KCH chunks per row.
template <int ITERS, int NT, int KCH, int CHUNKS, typename T>
__device__ __forceinline__ void gatherRows(const GemmProblem& p, const RowTile& tile, const T* A, int tid,
                                           const T* (&aRow)[ITERS]) {
#pragma unroll
  for (int i = 0; i < ITERS; i++) {
    const int c = tid + i * NT;
    const int r = tile.rowStart + c / KCH;
    const int src = (c < CHUNKS && r < tile.rowEnd) ? sourceRow(p, r) : -1;
    aRow[i] = src >= 0 ? A + static_cast<long long>(src) * p.lda : nullptr;
  }
}

template <int ITERS, int NT, int KCH, int CHUNKS, typename T>
__device__ __forceinline__ void weightRows(const GemmProblem& p, int n0, const T* B, int tid, const T* (&bRow)[ITERS]) {
#pragma unroll
  for (int i = 0; i < ITERS; i++) {
    const int c = tid + i * NT;
    const int n = n0 + c / KCH;
    bRow[i] = (c < CHUNKS && n < p.N) ? B + static_cast<long long>(n) * p.K : nullptr;
  }
}

}  // namespace gemm
}  // namespace moe
