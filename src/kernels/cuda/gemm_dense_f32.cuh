// Dense float32 GEMM for many rows (the router at prefill): exact FMA on CUDA cores, as routing needs float32
// (docs/semantics.md sections 2 and 7). The segmented FMA core's 4x8 blocks per thread load one shared-memory value
// per 2.7 FMAs and reached a quarter of the SIMT peak on the H200 (router at T = 4096: 0.133 ms); here each thread
// owns 8x8 outputs (4 FMAs per value read), 128x128 tiles, split-K across blocks for the few column tiles. Each
// output is the same ascending-k FMA chain per K slice as the segmented core, so a given split gives the same bits.
#pragma once

#include "gemm_epilogue.cuh"

namespace moe {
namespace gemm {

constexpr int kDenseF32Rows = 128, kDenseF32Cols = 128, kDenseF32Threads = 256;

// Column-0 blocks also write A converted to p.aCopyElem into p.aCopy (lda == K): the K slices partition A, so every
// element is converted exactly once while its tile is in registers anyway (no separate convert pass over A).
__global__ void __launch_bounds__(kDenseF32Threads) denseF32GemmKernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int BM = kDenseF32Rows, BN = kDenseF32Cols, BK = 16, NT = kDenseF32Threads;
  constexpr int KCH = BK / 4;             // float4 chunks per row and k tile
  constexpr int IT = BM * KCH / NT;       // chunks per thread (A and B alike: BM == BN)
  static_assert(BM == BN && BM * KCH % NT == 0, "tile shape");
  __shared__ __align__(16) float As[2][BK][BM + 4];  // k-major; the padding spreads the transposing stores
  __shared__ __align__(16) float Bs[2][BK][BN + 4];

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int kChunk = p.kSplit > 1 ? kSplitChunk(p.K, p.kSplit) : p.K;
  const int kBegin = blockIdx.z * kChunk, kEnd = min(p.K, kBegin + kChunk);
  const float* A = static_cast<const float*>(p.A);
  const float* B = static_cast<const float*>(p.B);
  const bool copyA = p.aCopy != nullptr && blockIdx.y == 0;

  const float* aRow[IT];
  const float* bRow[IT];
#pragma unroll
  for (int i = 0; i < IT; i++) {
    const int r = (tid + i * NT) / KCH;
    aRow[i] = m0 + r < p.M ? A + static_cast<long long>(m0 + r) * p.lda : nullptr;
    bRow[i] = n0 + r < p.N ? B + static_cast<long long>(n0 + r) * p.K : nullptr;
  }
  const int kq = ((tid % KCH) * 4);  // this thread's k offset in a tile (the same for each of its chunks)

  float4 aReg[IT], bReg[IT];
  auto loadRegs = [&](int kt) {
    const int k = kBegin + kt * BK + kq;
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
      aReg[i] = aRow[i] != nullptr && k < kEnd ? *reinterpret_cast<const float4*>(aRow[i] + k) : z;
      bReg[i] = bRow[i] != nullptr && k < kEnd ? *reinterpret_cast<const float4*>(bRow[i] + k) : z;
      if (copyA && aRow[i] != nullptr && k < kEnd) {
        const long long at = static_cast<long long>(m0 + (tid + i * NT) / KCH) * p.K + k;
        if (p.aCopyElem == DType::kBFloat16) {
          __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.aCopy) + at);
          dst[0] = __floats2bfloat162_rn(aReg[i].x, aReg[i].y);
          dst[1] = __floats2bfloat162_rn(aReg[i].z, aReg[i].w);
        } else {
          __half2* dst = reinterpret_cast<__half2*>(static_cast<__half*>(p.aCopy) + at);
          dst[0] = __floats2half2_rn(aReg[i].x, aReg[i].y);
          dst[1] = __floats2half2_rn(aReg[i].z, aReg[i].w);
        }
      }
    }
  };
  auto storeSmem = [&](int buf) {
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const int r = (tid + i * NT) / KCH;
      As[buf][kq][r] = aReg[i].x;
      As[buf][kq + 1][r] = aReg[i].y;
      As[buf][kq + 2][r] = aReg[i].z;
      As[buf][kq + 3][r] = aReg[i].w;
      Bs[buf][kq][r] = bReg[i].x;
      Bs[buf][kq + 1][r] = bReg[i].y;
      Bs[buf][kq + 2][r] = bReg[i].z;
      Bs[buf][kq + 3][r] = bReg[i].w;
    }
  };

  // Thread (tx, ty) owns rows ty*4.. and 64+ty*4.., columns tx*4.. and 64+tx*4..: two float4 reads of each operand
  // per k, and a warp's B reads cover 16 distinct float4s (no bank conflict).
  const int tx = tid % 16, ty = tid / 16;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;

  const int KT = kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0;
  if (KT > 0) {
    loadRegs(0);
    storeSmem(0);
  }
  __syncthreads();
  for (int kt = 0; kt < KT; kt++) {
    const int buf = kt & 1;
    if (kt + 1 < KT) loadRegs(kt + 1);  // the next tile's global loads in flight during this one's FMAs
#pragma unroll
    for (int k = 0; k < BK; k++) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][64 + tx * 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (kt + 1 < KT) storeSmem(buf ^ 1);
    __syncthreads();
  }

  GemmProblem q = p;  // split-K: this slice's slab of C (an empty slice writes its zeros: the sum reads every slab)
  if (p.kSplit > 1) q.C = static_cast<float*>(p.C) + static_cast<long long>(blockIdx.z) * p.M * p.ldc;
  using E = Epi<float, Epilogue::kStore>;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int r = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (r >= p.M) continue;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int c = n0 + h * 64 + tx * 4;
      E::store2(q, p.bias, r, c, acc[i][h * 4], acc[i][h * 4 + 1]);
      E::store2(q, p.bias, r, c + 2, acc[i][h * 4 + 2], acc[i][h * 4 + 3]);
    }
  }
}

}  // namespace gemm
}  // namespace moe
