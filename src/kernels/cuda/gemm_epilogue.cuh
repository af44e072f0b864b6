// Grouped GEMM epilogue, shared by both math cores (bias, SwiGLU or clamped SwiGLU x scale, output conversion).
#pragma once

#include "grouped_gemm.h"

namespace moe {
namespace gemm {

// ---- epilogue, shared by both cores: one call per (row, pair of adjacent accumulators) ----
template <typename OutT, Epilogue EPI>
struct Epi {
  // Stores acc for columns (col, col+1) of row r; n is the problem's N.
  static __device__ __forceinline__ void store2(const GemmProblem& p, const float* bias, int r, int col, float v0,
                                                float v1) {
    OutT* C = static_cast<OutT*>(p.C) + static_cast<long long>(r) * p.ldc;
    if (col < p.N) {
      const float b = bias ? bias[col] : 0.f;
      if (EPI == Epilogue::kAccumulate) C[col] = ElemTraits<OutT>::fromFloat(ElemTraits<OutT>::toFloat(C[col]) + v0);
      else C[col] = ElemTraits<OutT>::fromFloat(v0 + b);
    }
    if (col + 1 < p.N) {
      const float b = bias ? bias[col + 1] : 0.f;
      if (EPI == Epilogue::kAccumulate) {
        C[col + 1] = ElemTraits<OutT>::fromFloat(ElemTraits<OutT>::toFloat(C[col + 1]) + v1);
      } else {
        C[col + 1] = ElemTraits<OutT>::fromFloat(v1 + b);
      }
    }
  }
  // SwiGLU of one gate column (gcol) and its up partner (ucol), written to output column i.
  static __device__ __forceinline__ void swiglu(const GemmProblem& p, const float* bias, int r, float rowScale, int gcol,
                                                int ucol, int i, float g, float u) {
    if (gcol >= p.N) return;
    OutT* C = static_cast<OutT*>(p.C) + static_cast<long long>(r) * p.ldc;
    C[i] = ElemTraits<OutT>::fromFloat(swigluValue(p, bias, rowScale, gcol, ucol, g, u));
  }
  // The value swiglu() stores (before the conversion to OutT), for kernels that store two outputs at once.
  static __device__ __forceinline__ float swigluValue(const GemmProblem& p, const float* bias, float rowScale, int gcol,
                                                      int ucol, float g, float u) {
    if (p.scaleInput) {
      // routingWeightOn 'input': W (w x) = w (W x), so the weight scales the accumulators before bias and activation.
      g *= rowScale;
      u *= rowScale;
      rowScale = 1.f;
    }
    if (bias) {
      g += bias[gcol];
      u += bias[ucol];
    }
    return swigluOf(g, u, p.activation) * rowScale;
  }
  static __device__ __forceinline__ float rowScale(const GemmProblem& p, int r) {
    if (p.scale == nullptr) return 1.f;
    return p.scale[p.scaleIndex ? p.scaleIndex[r] : r];
  }
};

}  // namespace gemm
}  // namespace moe
