// The weighted combine folded into the decode down GEMM (GemmProblem.combineOut): every block of a column tile
// counts itself done; the last one combines that tile's columns from the rows the others wrote (through L2).
#pragma once

#include "combine_device.cuh"
#include "grouped_gemm.h"

namespace moe {
namespace gemm {

constexpr int kTailMaxSlots = 8;     // k up to this: the slots' loads are issued together
constexpr int kTailMaxPairs = 256;   // T * k up to this: the pair maps are staged in shared memory

__device__ __forceinline__ bool isAligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

struct CombineTailArgs {
  const float* y;  // [R][D], written by the other blocks of this grid
  float* out;      // [T][D]
  int n0, cols, T, k, R, D, E;
  const int* rowMap;
  const float* weights;
  const int* ids;
  const float* bias;
  bool weightsApplied;
  const float* identityX;
};

// C consecutive floats (C = 1, or 4 from a 16-byte aligned address), through L2 when viaL2.
template <int C>
__device__ __forceinline__ void loadColumns(const float* p, float (&v)[C], bool viaL2) {
  if constexpr (C == 4) {
    const float4 f = viaL2 ? __ldcg(reinterpret_cast<const float4*>(p)) : *reinterpret_cast<const float4*>(p);
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
  } else {
    v[0] = viaL2 ? __ldcg(p) : *p;
  }
}

// Token t's columns d .. d + C - 1: the k slots' loads issued together, then combineElement's terms in slot order.
template <int C>
__device__ __forceinline__ void combineColumns(const CombineTailArgs& a, const int* sRow, const int* sExpert,
                                               const float* sWeight, int t, int d) {
  float v[kTailMaxSlots][C];
#pragma unroll
  for (int j = 0; j < kTailMaxSlots; j++) {
    const int row = j < a.k ? sRow[t * a.k + j] : -2;
    if (row >= 0 && row < a.R) {
      loadColumns<C>(a.y + static_cast<long long>(row) * a.D + d, v[j], true);
    } else {
#pragma unroll
      for (int c = 0; c < C; c++) v[j][c] = 0.f;
    }
  }
  float acc[C];
#pragma unroll
  for (int c = 0; c < C; c++) acc[c] = 0.f;
#pragma unroll
  for (int j = 0; j < kTailMaxSlots; j++) {
    if (j >= a.k) break;
    const int row = sRow[t * a.k + j];
    const float w = sWeight[t * a.k + j];
    float extra[C];
    bool hasExtra = false;
    if (row >= 0 && row < a.R) {
#pragma unroll
      for (int c = 0; c < C; c++) acc[c] = combineSlot(acc[c], v[j][c], w, a.weightsApplied);
      const int e = sExpert[t * a.k + j];
      if (a.bias && e >= 0 && e < a.E) {
        loadColumns<C>(a.bias + static_cast<long long>(e) * a.D + d, extra, false);
        hasExtra = true;
      }
    } else if (a.identityX && row == -1) {
      loadColumns<C>(a.identityX + static_cast<long long>(t) * a.D + d, extra, false);
      hasExtra = true;
    }
    if (hasExtra) {
#pragma unroll
      for (int c = 0; c < C; c++) acc[c] += w * extra[c];
    }
  }
  float* out = a.out + static_cast<long long>(t) * a.D + d;
  if constexpr (C == 4) {
    *reinterpret_cast<float4*>(out) = make_float4(acc[0], acc[1], acc[2], acc[3]);
  } else {
    out[0] = acc[0];
  }
}

// The last block's work, out of line (it runs once per column tile; inlined it would cost the mainloop registers).
// The sums are combineElement's, term by term in slot order; only the loads are issued ahead.
// scratch: the kernel's own (dynamic) shared memory, free once its mainloop is done: at least 3 * kTailMaxPairs
// words (static arrays here would add to every GEMM kernel's shared memory and break its 48 KB budget).
static __device__ __noinline__ void combineTailWork(const CombineTailArgs a, int* scratch) {
  int* sRow = scratch;
  int* sExpert = scratch + kTailMaxPairs;
  float* sWeight = reinterpret_cast<float*>(scratch + 2 * kTailMaxPairs);
  const int pairs = a.T * a.k;
  if (a.k > kTailMaxSlots || pairs > kTailMaxPairs) {
    for (int i = threadIdx.x; i < a.T * a.cols; i += blockDim.x) {
      const int t = i / a.cols, d = a.n0 + i % a.cols;
      a.out[static_cast<long long>(t) * a.D + d] = combineElement<true>(
          a.y, a.R, a.D, a.rowMap, a.weights, a.ids, t, d, a.k, a.E, a.bias, a.weightsApplied, a.identityX);
    }
    return;
  }
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    sRow[i] = a.rowMap[i];
    sWeight[i] = a.weights[i];
    sExpert[i] = a.ids[i];
  }
  __syncthreads();
  // Four columns per thread where every row is 16-byte aligned: a thread's k slots x 4 columns in k loads at once,
  // so at 16 tokens each thread waits on L2 twice instead of eight times. The same terms in the same order.
  const bool vec4 = a.cols % 4 == 0 && a.n0 % 4 == 0 && a.D % 4 == 0 && isAligned16(a.y) && isAligned16(a.out) &&
                    (a.bias == nullptr || isAligned16(a.bias)) && (a.identityX == nullptr || isAligned16(a.identityX));
  if (vec4) {
    const int quads = a.cols / 4;
    for (int i = threadIdx.x; i < a.T * quads; i += blockDim.x) {
      combineColumns<4>(a, sRow, sExpert, sWeight, i / quads, a.n0 + 4 * (i % quads));
    }
  } else {
    for (int i = threadIdx.x; i < a.T * a.cols; i += blockDim.x) {
      combineColumns<1>(a, sRow, sExpert, sWeight, i / a.cols, a.n0 + i % a.cols);
    }
  }
}

// Called by every block of the grid (tiles without rows too, so the count is the number of row tiles),
// block-uniformly. The column tile is blockIdx.y, or blockIdx.x where the grid walks column tiles first.
template <int BN>
__device__ __forceinline__ void combineTail(const GemmProblem& p, int n0, void* scratch) {
  __shared__ int lastBlock;
  __threadfence();  // this block's rows of C before its count
  __syncthreads();
  if (threadIdx.x == 0) {
    const int colTile = p.colTilesFirst ? blockIdx.x : blockIdx.y;
    const int rowTiles = p.colTilesFirst ? gridDim.y : gridDim.x;
    lastBlock = atomicAdd(&p.tileCounters[colTile], 1) == rowTiles - 1;
    if (lastBlock) p.tileCounters[colTile] = 0;  // every block of this column tile has counted
  }
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  combineTailWork(CombineTailArgs{static_cast<const float*>(p.C), p.combineOut, n0, min(BN, p.N - n0),
                                  p.combineTokens, p.topK, p.M, p.ldc, p.seg.numExperts, p.pairRow, p.pairWeight,
                                  p.pairExpert, p.combineBias, p.weightsApplied, p.identityX},
                  static_cast<int*>(scratch));
}

}  // namespace gemm
}  // namespace moe
