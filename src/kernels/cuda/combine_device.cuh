// The weighted combine of one output element (docs/semantics.md sections 6, 11.5), shared by the combine kernel
// (elementwise.cu) and the decode down GEMM's last tile (gemm_combine_tail.cuh), so both sum exactly alike.
#pragma once

#include "moe_common.cuh"

namespace moe {

// One slot's term: the combine kernels all add it this way, so their sums agree bit for bit.
__device__ __forceinline__ float combineSlot(float acc, float v, float w, bool weightsApplied) {
  return acc + (weightsApplied ? v : w * v);
}

// out[t][d]: the k rows of token t summed in slot order, in float32. kViaL2: y is read through L2 (__ldcg), as the
// GEMM's tail must (other blocks of the same grid wrote the rows). With identityX, a slot with no row (rowMap -1: a
// zero-computation expert's) adds w * identityX[t] instead.
template <bool kViaL2>
__device__ __forceinline__ float combineElement(const float* __restrict__ y, int R, int D, const int* __restrict__ rowMap,
                                                const float* __restrict__ weights, const int* __restrict__ ids, int t,
                                                int d, int k, int E, const float* __restrict__ bias, bool weightsApplied,
                                                const float* __restrict__ identityX) {
  float acc = 0.f;
  for (int j = 0; j < k; j++) {
    const int row = rowMap[t * k + j];
    const float w = weights[t * k + j];
    if (row >= 0 && row < R) {
      const float v = kViaL2 ? __ldcg(y + static_cast<long long>(row) * D + d) : y[static_cast<long long>(row) * D + d];
      acc = combineSlot(acc, v, w, weightsApplied);
      if (bias) {
        const int e = ids[t * k + j];
        if (e >= 0 && e < E) acc += w * bias[static_cast<long long>(e) * D + d];
      }
    } else if (identityX && row == -1) {
      acc += w * identityX[static_cast<long long>(t) * D + d];  // weighted in every mode, no bias
    }
  }
  return acc;
}

}  // namespace moe
