// Grouped GEMM math core on tensor cores (bf16/f16 operands, f32 accumulation).
#pragma once

#include "gemm_combine_tail.cuh"
#include "gemm_epilogue.cuh"
#include "gemm_ptx.cuh"
#include "gemm_scheduler.cuh"

namespace moe {
namespace gemm {

// ---- tensor-core core ----
template <typename Elem, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES>
struct MmaConfig {
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kRowStride = BK + 8;  // +16 bytes: the 8 rows an ldmatrix reads land on distinct banks
  static constexpr int kSmemBytes = STAGES * (BM + BN) * kRowStride * static_cast<int>(sizeof(Elem));
};

// VEC: K % 8 == 0, lda % 8 == 0 and 16-byte aligned bases, so every 16-byte chunk is wholly in or out of
// bounds and cp.async can move it; otherwise elements are loaded one by one (odd test shapes only).
template <typename Elem, typename OutT, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, Epilogue EPI,
          bool VEC>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    mmaGemmKernel(const GemmProblem p) {
  awaitPredecessor();
  using Cfg = MmaConfig<Elem, BM, BN, BK, WARPS_M, WARPS_N, STAGES>;
  constexpr int NT = Cfg::kThreads;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  constexpr int MI = WM / 16, NI = WN / 8;
  constexpr int LDS = Cfg::kRowStride;
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0, "tile shape");
  constexpr int KCH = BK / 8;  // 16-byte chunks per tile row
  constexpr int A_CHUNKS = BM * KCH, A_IT = (A_CHUNKS + NT - 1) / NT;
  constexpr int B_CHUNKS = BN * KCH, B_IT = (B_CHUNKS + NT - 1) / NT;

  extern __shared__ __align__(16) unsigned char smemRaw[];
  Elem* As = reinterpret_cast<Elem*>(smemRaw);
  Elem* Bs = As + STAGES * BM * LDS;

  const RowTile tile = findRowTile<BM>(p, blockIdx.x);
  const int n0 = blockIdx.y * BN;
  if (!tile.valid) {
    if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN, NT>(p, n0);
    return;
  }
  const int tid = threadIdx.x;
  const Elem* A = static_cast<const Elem*>(p.A);
  const Elem* B = static_cast<const Elem*>(p.B) + static_cast<long long>(tile.expert) * p.N * p.K;
  const Elem zero = ElemTraits<Elem>::fromFloat(0.f);

  // The rows each thread loads are the same for every k step: resolve the gather once.
  const Elem* aRow[A_IT];
  const Elem* bRow[B_IT];
  gatherRows<A_IT, NT, KCH, A_CHUNKS>(p, tile, A, tid, aRow);
  weightRows<B_IT, NT, KCH, B_CHUNKS>(p, n0, B, tid, bRow);

  auto loadStage = [&](int stage, int kt) {
    const int k0 = kt * BK;
    Elem* as = As + stage * BM * LDS;
    Elem* bs = Bs + stage * BN * LDS;
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
      const int c = tid + i * NT;
      if (A_CHUNKS % NT != 0 && c >= A_CHUNKS) break;
      const int kc = (c % KCH) * 8, k = k0 + kc;
      Elem* dst = as + (c / KCH) * LDS + kc;
      if (VEC) {
        const bool ok = aRow[i] != nullptr && k < p.K;
        cpAsync16(dst, ok ? aRow[i] + k : A, ok);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) dst[e] = (aRow[i] != nullptr && k + e < p.K) ? aRow[i][k + e] : zero;
      }
    }
#pragma unroll
    for (int i = 0; i < B_IT; i++) {
      const int c = tid + i * NT;
      if (B_CHUNKS % NT != 0 && c >= B_CHUNKS) break;
      const int kc = (c % KCH) * 8, k = k0 + kc;
      Elem* dst = bs + (c / KCH) * LDS + kc;
      if (VEC) {
        const bool ok = bRow[i] != nullptr && k < p.K;
        cpAsync16(dst, ok ? bRow[i] + k : B, ok);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) dst[e] = (bRow[i] != nullptr && k + e < p.K) ? bRow[i][k + e] : zero;
      }
    }
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  float acc[MI][NI][4];
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int ni = 0; ni < NI; ni++)
#pragma unroll
      for (int q = 0; q < 4; q++) acc[mi][ni][q] = 0.f;

  const int KT = (p.K + BK - 1) / BK;
  // The last tile of a segment is often short (at T=4096 about half the experts end in a tile of a few rows):
  // warps whose rows all lie past the segment's end skip the math (they still load and synchronize).
  const bool warpHasRows = tile.rowStart + wm * WM < tile.rowEnd;
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < KT) loadStage(s, s);
    cpAsyncCommit();
  }
  for (int kt = 0; kt < KT; kt++) {
    cpAsyncWait<STAGES - 2>();
    __syncthreads();  // stage kt landed for everyone, and stage kt-1 is no longer being read
    const int pf = kt + STAGES - 1;
    if (pf < KT) loadStage(pf % STAGES, pf);
    cpAsyncCommit();
    if (!warpHasRows) continue;

    const Elem* as = As + (kt % STAGES) * BM * LDS + (wm * WM) * LDS;
    const Elem* bs = Bs + (kt % STAGES) * BN * LDS + (wn * WN) * LDS;
#pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) {
      uint32_t af[MI][4];
      uint32_t bf[NI][2];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        ldmatrixX4(af[mi], as + (mi * 16 + (lane % 16)) * LDS + ks * 16 + (lane / 16) * 8);
      }
#pragma unroll
      for (int nj = 0; nj < NI / 2; nj++) {
        uint32_t r[4];
        ldmatrixX4(r, bs + (nj * 16 + (lane / 16) * 8 + (lane % 8)) * LDS + ks * 16 + ((lane / 8) % 2) * 8);
        bf[2 * nj][0] = r[0];
        bf[2 * nj][1] = r[1];
        bf[2 * nj + 1][0] = r[2];
        bf[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++) Mma<Elem>::run(acc[mi][ni], af[mi], bf[ni]);
    }
  }
  cpAsyncWait<0>();

  // Fragment layout: thread (g = lane/4, t = lane%4) holds rows g and g+8, columns 2t and 2t+1 of each n8 block.
  const float* bias = p.bias ? p.bias + static_cast<long long>(tile.expert) * p.N : nullptr;
  const int g = lane / 4, t4 = lane % 4;
  using E = Epi<OutT, EPI>;
#pragma unroll
  for (int mi = 0; mi < MI; mi++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = tile.rowStart + wm * WM + mi * 16 + g + half * 8;
      if (r >= tile.rowEnd) continue;
      if (EPI == Epilogue::kSwiglu) {
        // Interleave width 8: n8 block 2j holds gate columns, block 2j+1 the matching up columns.
        const float s = E::rowScale(p, r);
#pragma unroll
        for (int nj = 0; nj < NI / 2; nj++) {
          const int gcol = n0 + wn * WN + nj * 16 + 2 * t4;
          const int i = (gcol / 16) * 8 + 2 * t4;
          E::swiglu(p, bias, r, s, gcol, gcol + 8, i, acc[mi][2 * nj][half * 2], acc[mi][2 * nj + 1][half * 2]);
          E::swiglu(p, bias, r, s, gcol + 1, gcol + 9, i + 1, acc[mi][2 * nj][half * 2 + 1],
                    acc[mi][2 * nj + 1][half * 2 + 1]);
        }
      } else {
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          const int col = n0 + wn * WN + ni * 8 + 2 * t4;
          E::store2(p, bias, r, col, acc[mi][ni][half * 2], acc[mi][ni][half * 2 + 1]);
        }
      }
    }
  }
  if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN, NT>(p, n0);
}

}  // namespace gemm
}  // namespace moe
