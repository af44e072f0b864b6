// Grouped GEMM kernels over device-side segments. Two math cores share one tile scheduler and one epilogue:
//  - mmaGemmKernel: bf16/f16 operands on tensor cores (mma.sync m16n8k16, f32 accumulation), cp.async
//    multi-stage pipeline, ldmatrix fragment loads. Used on sm_80..sm_90 alike.
//  - fmaGemmKernel: exact float32 (FMA on CUDA cores, no TF32), register-staged double buffering, so the
//    float32 path meets the float32 GEMM tolerance rather than TF32's ~1e-3.
// A block's row tile is found on the device (binary search over the tile prefix the permute wrote), so the grid
// is sized from static bounds and nothing is read back to the host; surplus blocks return at once. With a small
// tile height every active expert's weights are streamed exactly once: that is the decode path.
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
  if (tileIdx >= prefix[numExperts]) return t;
  // The last expert whose first tile is at or before tileIdx; empty experts share their successor's prefix
  // and so are never chosen.
  int lo = 0, hi = numExperts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (prefix[mid] <= tileIdx) lo = mid; else hi = mid - 1;
  }
  t.expert = lo;
  t.rowStart = p.seg.offsets[lo] + (tileIdx - prefix[lo]) * BM;
  t.rowEnd = min(p.seg.offsets[lo + 1], p.M);
  t.valid = t.rowStart < t.rowEnd;
  return t;
}

__device__ __forceinline__ int sourceRow(const GemmProblem& p, int r) {
  if (p.aRowIndex == nullptr) return r;
  const int v = p.aRowIndex[r];
  return v < 0 ? -1 : v / p.aRowDiv;
}

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
    if (bias) {
      g += bias[gcol];
      u += bias[ucol];
    }
    OutT* C = static_cast<OutT*>(p.C) + static_cast<long long>(r) * p.ldc;
    C[i] = ElemTraits<OutT>::fromFloat(siluf(g) * u * rowScale);
  }
  static __device__ __forceinline__ float rowScale(const GemmProblem& p, int r) {
    if (p.scale == nullptr) return 1.f;
    return p.scale[p.scaleIndex ? p.scaleIndex[r] : r];
  }
};

// ---- PTX wrappers ----
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled, nothing is read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

template <typename Elem> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

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
  if (!tile.valid) return;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x;
  const Elem* A = static_cast<const Elem*>(p.A);
  const Elem* B = static_cast<const Elem*>(p.B) + static_cast<long long>(tile.expert) * p.N * p.K;
  const Elem zero = ElemTraits<Elem>::fromFloat(0.f);

  // The rows each thread loads are the same for every k step: resolve the gather once.
  const Elem* aRow[A_IT];
  const Elem* bRow[B_IT];
#pragma unroll
  for (int i = 0; i < A_IT; i++) {
    const int c = tid + i * NT;
    const int r = tile.rowStart + c / KCH;
    const int src = (c < A_CHUNKS && r < tile.rowEnd) ? sourceRow(p, r) : -1;
    aRow[i] = src >= 0 ? A + static_cast<long long>(src) * p.lda : nullptr;
  }
#pragma unroll
  for (int i = 0; i < B_IT; i++) {
    const int c = tid + i * NT;
    const int n = n0 + c / KCH;
    bRow[i] = (c < B_CHUNKS && n < p.N) ? B + static_cast<long long>(n) * p.K : nullptr;
  }

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
}

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
#pragma unroll
  for (int i = 0; i < A_IT; i++) {
    const int c = tid + i * NT;
    const int r = tile.rowStart + c / KCH;
    const int src = (c < A_CHUNKS && r < tile.rowEnd) ? sourceRow(p, r) : -1;
    aRow[i] = src >= 0 ? A + static_cast<long long>(src) * p.lda : nullptr;
  }
#pragma unroll
  for (int i = 0; i < B_IT; i++) {
    const int c = tid + i * NT;
    const int n = n0 + c / KCH;
    bRow[i] = (c < B_CHUNKS && n < p.N) ? B + static_cast<long long>(n) * p.K : nullptr;
  }

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
