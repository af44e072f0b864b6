// Grouped GEMM math core in exact float32 (FMA on CUDA cores, no TF32).
#pragma once

#include "gemm_epilogue.cuh"
#include "gemm_scheduler.cuh"

namespace moe {
namespace gemm {

// ---- float32 FMA core ----
// Thread (tx, ty) owns TM consecutive rows and 8 columns: 4 at colA..colA+3 and 4 at colA+32.., where
// colA = (tx/8)*64 + (tx%8)*4. Those two quads are a gate/up pair under interleave width 32, and the float4
// reads of a warp cover all banks.
template <int BM, int BN, int BK, int TM, Epilogue EPI, bool VEC>
__global__ void __launch_bounds__((BN / 8) * (BM / TM)) fmaGemmKernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int TX = BN / 8, TY = BM / TM, NT = TX * TY;
  static_assert(BN % 64 == 0 && BK % 4 == 0, "tile shape");
  constexpr int KCH = BK / 4;  // float4 chunks per tile row
  constexpr int A_CHUNKS = BM * KCH, A_IT = (A_CHUNKS + NT - 1) / NT;
  constexpr int B_CHUNKS = BN * KCH, B_IT = (B_CHUNKS + NT - 1) / NT;
  __shared__ __align__(16) float As[2][BK][BM + 4];  // k-major: a thread reads its rows as float4s
  __shared__ __align__(16) float Bs[2][BK][BN + 4];

  const RowTile tile = findRowTile<BM>(p, blockIdx.x);
  if (!tile.valid) return;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x;
  // Split-K: this block's slice of K; its partial product goes to its own slab of C.
  const int kChunk = p.kSplit > 1 ? kSplitChunk(p.K, p.kSplit) : p.K;
  const int kBegin = blockIdx.z * kChunk, kEnd = min(p.K, kBegin + kChunk);
  const float* A = static_cast<const float*>(p.A);
  const float* B = static_cast<const float*>(p.B) + static_cast<long long>(tile.expert) * p.N * p.K;

  const float* aRow[A_IT];
  const float* bRow[B_IT];
  gatherRows<A_IT, NT, KCH, A_CHUNKS>(p, tile, A, tid, aRow);
  weightRows<B_IT, NT, KCH, B_CHUNKS>(p, n0, B, tid, bRow);

  float4 aReg[A_IT], bReg[B_IT];
  auto fetch = [&](const float* row, int k) -> float4 {
    if (row == nullptr) return make_float4(0.f, 0.f, 0.f, 0.f);
    if (VEC) return k < kEnd ? *reinterpret_cast<const float4*>(row + k) : make_float4(0.f, 0.f, 0.f, 0.f);
    return make_float4(k < kEnd ? row[k] : 0.f, k + 1 < kEnd ? row[k + 1] : 0.f, k + 2 < kEnd ? row[k + 2] : 0.f,
                       k + 3 < kEnd ? row[k + 3] : 0.f);
  };
  auto loadRegs = [&](int kt) {
#pragma unroll
    for (int i = 0; i < A_IT; i++) aReg[i] = fetch(aRow[i], kBegin + kt * BK + ((tid + i * NT) % KCH) * 4);
#pragma unroll
    for (int i = 0; i < B_IT; i++) bReg[i] = fetch(bRow[i], kBegin + kt * BK + ((tid + i * NT) % KCH) * 4);
  };
  auto storeSmem = [&](int buf) {
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
      const int c = tid + i * NT;
      if (A_CHUNKS % NT != 0 && c >= A_CHUNKS) break;
      const int m = c / KCH, k = (c % KCH) * 4;
      As[buf][k][m] = aReg[i].x;
      As[buf][k + 1][m] = aReg[i].y;
      As[buf][k + 2][m] = aReg[i].z;
      As[buf][k + 3][m] = aReg[i].w;
    }
#pragma unroll
    for (int i = 0; i < B_IT; i++) {
      const int c = tid + i * NT;
      if (B_CHUNKS % NT != 0 && c >= B_CHUNKS) break;
      const int n = c / KCH, k = (c % KCH) * 4;
      Bs[buf][k][n] = bReg[i].x;
      Bs[buf][k + 1][n] = bReg[i].y;
      Bs[buf][k + 2][n] = bReg[i].z;
      Bs[buf][k + 3][n] = bReg[i].w;
    }
  };

  const int tx = tid % TX, ty = tid / TX;
  const int colA = (tx / 8) * 64 + (tx % 8) * 4;
  float acc[TM][8];
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;

  const int KT = kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0;
  loadRegs(0);
  storeSmem(0);
  __syncthreads();
  for (int kt = 0; kt < KT; kt++) {
    const int buf = kt & 1;
    if (kt + 1 < KT) loadRegs(kt + 1);  // global loads in flight while this tile is multiplied
#pragma unroll
    for (int k = 0; k < BK; k++) {
      float a[TM];
      if (TM % 4 == 0) {
#pragma unroll
        for (int i = 0; i < TM; i += 4) {
          const float4 v = *reinterpret_cast<const float4*>(&As[buf][k][ty * TM + i]);
          a[i] = v.x;
          a[i + 1] = v.y;
          a[i + 2] = v.z;
          a[i + 3] = v.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < TM; i++) a[i] = As[buf][k][ty * TM + i];
      }
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][colA]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][colA + 32]);
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (kt + 1 < KT) storeSmem(buf ^ 1);
    __syncthreads();
  }

  const float* bias = p.bias ? p.bias + static_cast<long long>(tile.expert) * p.N : nullptr;
  GemmProblem q = p;  // split-K: this slice's slab of C (an empty slice writes its zeros: the sum reads every slab)
  if (p.kSplit > 1) q.C = static_cast<float*>(p.C) + static_cast<long long>(blockIdx.z) * p.M * p.ldc;
  using E = Epi<float, EPI>;
#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int r = tile.rowStart + ty * TM + i;
    if (r >= tile.rowEnd) continue;
    if (EPI == Epilogue::kSwiglu) {
      const float s = E::rowScale(q, r);
      const int gcol = n0 + colA;
      const int iOut = (gcol / 64) * 32 + (gcol % 64);
#pragma unroll
      for (int j = 0; j < 4; j++) E::swiglu(q, bias, r, s, gcol + j, gcol + 32 + j, iOut + j, acc[i][j], acc[i][j + 4]);
    } else {
      E::store2(q, bias, r, n0 + colA, acc[i][0], acc[i][1]);
      E::store2(q, bias, r, n0 + colA + 2, acc[i][2], acc[i][3]);
      E::store2(q, bias, r, n0 + colA + 32, acc[i][4], acc[i][5]);
      E::store2(q, bias, r, n0 + colA + 34, acc[i][6], acc[i][7]);
    }
  }
}

}  // namespace gemm
}  // namespace moe
