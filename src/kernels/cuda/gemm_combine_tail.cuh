// The weighted combine folded into the decode down GEMM (GemmProblem.combineOut): every block of a column tile
// counts itself done; the last one combines that tile's columns from the rows the others wrote (through L2). At
// T = 1 this replaces a 4-5 us combine launch with a tail of one block per column tile.
#pragma once

#include "combine_device.cuh"
#include "grouped_gemm.h"

namespace moe {
namespace gemm {

// Called by every block of the grid (tiles without rows too, so the count is the grid's height), block-uniformly.
template <int BN, int NT>
__device__ __forceinline__ void combineTail(const GemmProblem& p, int n0) {
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
  const float* y = static_cast<const float*>(p.C);
  const int cols = min(BN, p.N - n0);
  for (int i = threadIdx.x; i < p.combineTokens * cols; i += NT) {
    const int t = i / cols, d = n0 + i % cols;
    p.combineOut[static_cast<long long>(t) * p.ldc + d] =
        combineElement(y, p.M, p.ldc, p.pairRow, p.pairWeight, p.pairExpert, t, d, p.topK, p.seg.numExperts,
                       p.combineBias, p.weightsApplied, p.identityX);
  }
}

}  // namespace gemm
}  // namespace moe
