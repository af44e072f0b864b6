// The dense float32 GEMM of a few rows (the router at decode), as a block-wide device function: the kernel of
// gemm_f32.cu and the fused decode route kernel (decode_route.cu) run it.
#pragma once

#include "grouped_gemm.h"

namespace moe {
namespace gemm {

// Dense float32 GEMM with a few rows (the router at decode): one block per output column, its 8 warps each
// stream an interleaved eighth of that column's weights with independent float4 loads, partial sums reduced in
// a fixed order. The tiled kernel would leave most of the GPU idle here, and one warp per column is latency-bound.
constexpr int kFewRowsWarps = 8;
// Column n of the product (block-wide: kFewRowsWarps warps; gridBlocks blocks share the A conversion).
template <int MAXM>
__device__ __forceinline__ void denseFewRowsColumn(const GemmProblem& p, int n, int gridBlocks) {
  __shared__ float partial[kFewRowsWarps][MAXM];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* A = static_cast<const float*>(p.A);
  const float* b = static_cast<const float*>(p.B) + static_cast<long long>(n) * p.K;
  float acc[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; m++) acc[m] = 0.f;
#pragma unroll 2
  for (int k = (warp * 32 + lane) * 4; k < p.K; k += kFewRowsWarps * 128) {
    const float4 bv = *reinterpret_cast<const float4*>(b + k);
#pragma unroll
    for (int m = 0; m < MAXM; m++) {
      if (m < p.M) {
        const float4 av = *reinterpret_cast<const float4*>(A + static_cast<long long>(m) * p.lda + k);
        acc[m] = fmaf(av.x, bv.x, fmaf(av.y, bv.y, fmaf(av.z, bv.z, fmaf(av.w, bv.w, acc[m]))));
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MAXM; m++) {
    float v = acc[m];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp][m] = v;
  }
  __syncthreads();
  if (p.aCopy != nullptr) {
    // This block's share of the A conversion (A is dense here: lda == K).
    const long long total = static_cast<long long>(p.M) * p.K;
    for (long long i = static_cast<long long>(n) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridBlocks) * blockDim.x) {
      if (p.aCopyElem == DType::kBFloat16) static_cast<__nv_bfloat16*>(p.aCopy)[i] = __float2bfloat16_rn(A[i]);
      else static_cast<__half*>(p.aCopy)[i] = __float2half_rn(A[i]);
    }
  }
  for (int m = threadIdx.x; m < p.M && m < MAXM; m += blockDim.x) {
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kFewRowsWarps; w++) v += partial[w][m];
    float* C = static_cast<float*>(p.C) + static_cast<long long>(m) * p.ldc;
    C[n] = v + (p.bias ? p.bias[n] : 0.f);
  }
}

}  // namespace gemm
}  // namespace moe
