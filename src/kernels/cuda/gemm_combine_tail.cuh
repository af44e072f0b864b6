// The weighted combine folded into the decode down GEMM (GemmProblem.combineOut): every block of a column tile
// counts itself done; the last one combines that tile's columns from the rows the others wrote (through L2).
#pragma once

#include "combine_device.cuh"
#include "grouped_gemm.h"

namespace moe {
namespace gemm {

constexpr int kTailMaxSlots = 8;     // k up to this: the slots' loads are issued together
constexpr int kTailMaxPairs = 256;   // T * k up to this: the pair maps are staged in shared memory

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
  for (int i = threadIdx.x; i < a.T * a.cols; i += blockDim.x) {
    const int t = i / a.cols, d = a.n0 + i % a.cols;
    float v[kTailMaxSlots];
#pragma unroll
    for (int j = 0; j < kTailMaxSlots; j++) {
      const int row = j < a.k ? sRow[t * a.k + j] : -2;
      v[j] = row >= 0 && row < a.R ? __ldcg(a.y + static_cast<long long>(row) * a.D + d) : 0.f;
    }
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < kTailMaxSlots; j++) {
      if (j >= a.k) break;
      const int row = sRow[t * a.k + j];
      const float w = sWeight[t * a.k + j];
      if (row >= 0 && row < a.R) {
        acc += a.weightsApplied ? v[j] : w * v[j];
        if (a.bias) {
          const int e = sExpert[t * a.k + j];
          if (e >= 0 && e < a.E) acc += w * a.bias[static_cast<long long>(e) * a.D + d];
        }
      } else if (a.identityX && row == -1) {
        acc += w * a.identityX[static_cast<long long>(t) * a.D + d];
      }
    }
    a.out[static_cast<long long>(t) * a.D + d] = acc;
  }
}

// Called by every block of the grid (tiles without rows too, so the count is the grid's height), block-uniformly.
template <int BN>
__device__ __forceinline__ void combineTail(const GemmProblem& p, int n0, void* scratch) {
  __shared__ int lastBlock;
  __threadfence();  // this block's rows of C before its count
  __syncthreads();
  if (threadIdx.x == 0) {
    lastBlock = atomicAdd(&p.tileCounters[blockIdx.y], 1) == static_cast<int>(gridDim.x) - 1;
    if (lastBlock) p.tileCounters[blockIdx.y] = 0;  // every block of this column tile has counted
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
