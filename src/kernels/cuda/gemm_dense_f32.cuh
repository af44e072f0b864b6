// Dense float32 GEMM for many rows (the router at prefill), float32 as routing needs it (docs/semantics.md sections
// 2 and 7), 128 x 128 tiles, split-K across blocks for the few column tiles, two math cores:
//  - denseF32GemmKernel: exact FMA on CUDA cores, 8 x 8 outputs per thread (4 FMAs per value read from shared
//    memory; the segmented FMA core's 4 x 8 blocks reached a quarter of the SIMT peak on the H200). Each output is
//    the same ascending-k FMA chain per K slice as the segmented core.
//  - denseF32Tf32x3Kernel: tensor cores, each operand split into a TF32 high part and a TF32 remainder,
//    a*b ~ ah*bh + ah*bl + al*bh (the dropped al*bl and the remainders' rounding are about 2^-21 |a b|; float32
//    accumulation), within the 1e-5 x sum |a_k b_k| bound the float32 GEMMs are held to. Deterministic (fixed
//    instruction order); equal inputs give equal logits, so ties stay ties.
#pragma once

#include "gemm_epilogue.cuh"
#include "gemm_ptx.cuh"

namespace moe {
namespace gemm {

constexpr int kDenseF32Rows = 128, kDenseF32Cols = 128, kDenseF32Threads = 256, kDenseF32BK = 16;

// The global -> register -> shared staging both cores share: per k tile each thread loads IT float4s of A rows and
// of B rows (4 consecutive k), and stores them k-major (As[k][m], Bs[k][n], row stride LDS floats). Column-0 blocks
// also write A converted to p.aCopyElem into p.aCopy (lda == K) as they store a tile: the K slices partition A, so
// every element is converted exactly once, from registers that are loaded anyway.
template <int LDS>
struct DenseTileStaging {
  static constexpr int BM = kDenseF32Rows, BK = kDenseF32BK, NT = kDenseF32Threads, KCH = BK / 4;
  static constexpr int IT = BM * KCH / NT;
  static_assert(kDenseF32Rows == kDenseF32Cols && BM * KCH % NT == 0, "tile shape");
  const float* aRow[IT];
  const float* bRow[IT];
  float4 aReg[IT], bReg[IT];
  int kq, kBegin, kEnd, m0;
  bool copyA;

  __device__ __forceinline__ void init(const GemmProblem& p, int tid) {
    const int n0 = blockIdx.y * BM;
    m0 = blockIdx.x * BM;
    const int kChunk = p.kSplit > 1 ? kSplitChunk(p.K, p.kSplit) : p.K;
    kBegin = blockIdx.z * kChunk;
    kEnd = min(p.K, kBegin + kChunk);
    copyA = p.aCopy != nullptr && blockIdx.y == 0;
    const float* A = static_cast<const float*>(p.A);
    const float* B = static_cast<const float*>(p.B);
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const int r = (tid + i * NT) / KCH;
      aRow[i] = m0 + r < p.M ? A + static_cast<long long>(m0 + r) * p.lda : nullptr;
      bRow[i] = n0 + r < p.N ? B + static_cast<long long>(n0 + r) * p.K : nullptr;
    }
    kq = (tid % KCH) * 4;
  }
  __device__ __forceinline__ int tiles() const { return kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0; }
  __device__ __forceinline__ void load(int kt) {
    const int k = kBegin + kt * BK + kq;
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
      aReg[i] = aRow[i] != nullptr && k < kEnd ? *reinterpret_cast<const float4*>(aRow[i] + k) : z;
      bReg[i] = bRow[i] != nullptr && k < kEnd ? *reinterpret_cast<const float4*>(bRow[i] + k) : z;
    }
  }
  __device__ __forceinline__ void store(const GemmProblem& p, float (*As)[LDS], float (*Bs)[LDS], int kt, int tid) {
    const int k = kBegin + kt * BK + kq;
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const int r = (tid + i * NT) / KCH;
      As[kq][r] = aReg[i].x;
      As[kq + 1][r] = aReg[i].y;
      As[kq + 2][r] = aReg[i].z;
      As[kq + 3][r] = aReg[i].w;
      Bs[kq][r] = bReg[i].x;
      Bs[kq + 1][r] = bReg[i].y;
      Bs[kq + 2][r] = bReg[i].z;
      Bs[kq + 3][r] = bReg[i].w;
      if (copyA && aRow[i] != nullptr && k < kEnd) {
        const long long at = static_cast<long long>(m0 + r) * p.K + k;
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
  }
};

// The double-buffered k loop both cores share: compute(buf) multiplies the tile in buffer buf while the next tile's
// global loads are in flight.
template <int LDS, typename Compute>
__device__ __forceinline__ void denseMainLoop(const GemmProblem& p, DenseTileStaging<LDS>& st,
                                              float (*As)[kDenseF32BK][LDS], float (*Bs)[kDenseF32BK][LDS], int tid,
                                              Compute&& compute) {
  const int KT = st.tiles();
  if (KT > 0) {
    st.load(0);
    st.store(p, As[0], Bs[0], 0, tid);
  }
  __syncthreads();
  for (int kt = 0; kt < KT; kt++) {
    const int buf = kt & 1;
    if (kt + 1 < KT) st.load(kt + 1);
    compute(buf);
    if (kt + 1 < KT) st.store(p, As[buf ^ 1], Bs[buf ^ 1], kt + 1, tid);
    __syncthreads();
  }
}

// Split-K: this slice's slab of C (an empty slice writes its zeros: the sum reads every slab).
__device__ __forceinline__ GemmProblem sliceOf(const GemmProblem& p) {
  GemmProblem q = p;
  if (p.kSplit > 1) q.C = static_cast<float*>(p.C) + static_cast<long long>(blockIdx.z) * p.M * p.ldc;
  return q;
}

__global__ void __launch_bounds__(kDenseF32Threads) denseF32GemmKernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int BK = kDenseF32BK, LDS = kDenseF32Rows + 4;  // the padding spreads the transposing stores
  __shared__ __align__(16) float As[2][BK][LDS];
  __shared__ __align__(16) float Bs[2][BK][LDS];
  const int tid = threadIdx.x;
  DenseTileStaging<LDS> st;
  st.init(p, tid);

  // Thread (tx, ty) owns rows ty*4.. and 64+ty*4.., columns tx*4.. and 64+tx*4..: two float4 reads of each operand
  // per k, and a warp's B reads cover 16 distinct float4s (no bank conflict).
  const int tx = tid % 16, ty = tid / 16;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;

  denseMainLoop(p, st, As, Bs, tid, [&](int buf) {
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
  });

  const GemmProblem q = sliceOf(p);
  using E = Epi<float, Epilogue::kStore>;
  const int n0 = blockIdx.y * kDenseF32Cols;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int r = st.m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (r >= p.M) continue;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int c = n0 + h * 64 + tx * 4;
      E::store2(q, p.bias, r, c, acc[i][h * 4], acc[i][h * 4 + 1]);
      E::store2(q, p.bias, r, c + 2, acc[i][h * 4 + 2], acc[i][h * 4 + 3]);
    }
  }
}

__device__ __forceinline__ uint32_t toTf32(float v) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return r;
}
// v = high + low: both TF32 (the low part is what the high part's rounding left, itself rounded to TF32).
__device__ __forceinline__ void splitTf32(float v, uint32_t& high, uint32_t& low) {
  high = toTf32(v);
  low = toTf32(v - __uint_as_float(high));
}
__device__ __forceinline__ void mmaTf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One 16-deep k tile of a warp's 64 x 32 block (m16n8k8 tiles; lane = 4 g + t) in TF32 x 3, from a(m, k) / b(n, k)
// (the block's shared-memory tiles, whatever their layout): per k8 step and accumulator, al*bh, ah*bl, ah*bh.
template <typename ReadA, typename ReadB>
__device__ __forceinline__ void tf32x3Tile(float (&acc)[4][4][4], int wm, int wn, int g, int t, ReadA&& a,
                                           ReadB&& b) {
#pragma unroll
  for (int k0 = 0; k0 < kDenseF32BK; k0 += 8) {
    uint32_t bh[4][2], bl[4][2];
#pragma unroll
    for (int ni = 0; ni < 4; ni++) {
      const int n = wn + ni * 8 + g;
      splitTf32(b(n, k0 + t), bh[ni][0], bl[ni][0]);
      splitTf32(b(n, k0 + t + 4), bh[ni][1], bl[ni][1]);
    }
#pragma unroll
    for (int mi = 0; mi < 4; mi++) {
      const int m = wm + mi * 16 + g;
      uint32_t ah[4], al[4];
      splitTf32(a(m, k0 + t), ah[0], al[0]);
      splitTf32(a(m + 8, k0 + t), ah[1], al[1]);
      splitTf32(a(m, k0 + t + 4), ah[2], al[2]);
      splitTf32(a(m + 8, k0 + t + 4), ah[3], al[3]);
#pragma unroll
      for (int ni = 0; ni < 4; ni++) {
        mmaTf32(acc[mi][ni], al, bh[ni]);  // the small terms first
        mmaTf32(acc[mi][ni], ah, bl[ni]);
        mmaTf32(acc[mi][ni], ah, bh[ni]);
      }
    }
  }
}
// The warp's accumulators (m16n8: c0, c1 at row g, columns 2t, 2t+1; c2, c3 at row g + 8) from row r0, column c0
// into this K slice's slab of C.
__device__ __forceinline__ void tf32x3Store(const GemmProblem& p, const float (&acc)[4][4][4], int r0, int c0, int g,
                                            int t) {
  const GemmProblem q = sliceOf(p);
  using E = Epi<float, Epilogue::kStore>;
#pragma unroll
  for (int mi = 0; mi < 4; mi++) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = r0 + mi * 16 + g + h * 8;
      if (r >= p.M) continue;
#pragma unroll
      for (int ni = 0; ni < 4; ni++) {
        E::store2(q, p.bias, r, c0 + ni * 8 + 2 * t, acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
      }
    }
  }
}

// 8 warps as 2 (rows) x 4 (columns), each a 64 x 32 block of m16n8k8 tiles; fragments read straight from the k-major
// tiles (row stride 136: the 32 lanes of a fragment read hit 32 banks).
__global__ void __launch_bounds__(kDenseF32Threads) denseF32Tf32x3Kernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int BK = kDenseF32BK, LDS = kDenseF32Rows + 8;
  __shared__ __align__(16) float As[2][BK][LDS];
  __shared__ __align__(16) float Bs[2][BK][LDS];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32, g = lane / 4, t = lane % 4;
  DenseTileStaging<LDS> st;
  st.init(p, tid);
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;

  denseMainLoop(p, st, As, Bs, tid, [&](int buf) {
    tf32x3Tile(acc, wm, wn, g, t, [&](int m, int k) { return As[buf][k][m]; }, [&](int n, int k) { return Bs[buf][k][n]; });
  });

  tf32x3Store(p, acc, st.m0 + wm, blockIdx.y * kDenseF32Cols + wn, g, t);
}

// The same TF32 x 3 products in the same order (bitwise the same outputs as denseF32Tf32x3Kernel), with the tiles
// brought by cp.async into a ring of kDenseF32PipeStages row-major stages instead of through registers: a block keeps
// three k tiles of loads in flight, where the register staging kept one (each 16-deep k tile waited for a global
// round trip: the router at T = 4096 took 0.08 ms, about 4x its byte floor). Column-0 blocks convert their A
// chunks to p.aCopy from shared memory once a stage has landed (each element once, as before).
constexpr int kDenseF32PipeStages = 4, kDenseF32PipeLds = kDenseF32BK + 4;  // row stride 20: the fragment reads
                                                                            // of a warp hit 32 banks
constexpr int kDenseF32PipeSmem = kDenseF32PipeStages * 2 * kDenseF32Rows * kDenseF32PipeLds * 4;

__global__ void __launch_bounds__(kDenseF32Threads, 2) denseF32Tf32x3PipeKernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int BM = kDenseF32Rows, BK = kDenseF32BK, LDS = kDenseF32PipeLds, S = kDenseF32PipeStages;
  constexpr int KCH = BK / 4, IT = BM * KCH / kDenseF32Threads;  // 16-byte chunks per row, per thread per operand
  extern __shared__ __align__(16) float pipeSmem[];
  auto As = [&](int s) { return reinterpret_cast<float(*)[LDS]>(pipeSmem + s * 2 * BM * LDS); };
  auto Bs = [&](int s) { return reinterpret_cast<float(*)[LDS]>(pipeSmem + (s * 2 + 1) * BM * LDS); };
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32, g = lane / 4, t = lane % 4;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BM;
  const int kChunk = p.kSplit > 1 ? kSplitChunk(p.K, p.kSplit) : p.K;
  const int kBegin = blockIdx.z * kChunk, kEnd = min(p.K, kBegin + kChunk);
  const int KT = kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0;
  const bool copyA = p.aCopy != nullptr && blockIdx.y == 0;
  const float* A = static_cast<const float*>(p.A);
  const float* B = static_cast<const float*>(p.B);
  const int kq = (tid % KCH) * 4;
  const float* aRow[IT];
  const float* bRow[IT];
#pragma unroll
  for (int i = 0; i < IT; i++) {
    const int r = (tid + i * kDenseF32Threads) / KCH;
    aRow[i] = m0 + r < p.M ? A + static_cast<long long>(m0 + r) * p.lda : nullptr;
    bRow[i] = n0 + r < p.N ? B + static_cast<long long>(n0 + r) * p.K : nullptr;
  }
  // K % 4 == 0 (the launcher's vec condition) and slices start on 32: a 4-float chunk is all in or all out.
  auto issue = [&](int kt) {
    const int k = kBegin + kt * BK + kq, s = kt % S;
#pragma unroll
    for (int i = 0; i < IT; i++) {
      const int r = (tid + i * kDenseF32Threads) / KCH;
      const bool inK = k < kEnd;
      cpAsync16(&As(s)[r][kq], aRow[i] != nullptr && inK ? aRow[i] + k : A, aRow[i] != nullptr && inK);
      cpAsync16(&Bs(s)[r][kq], bRow[i] != nullptr && inK ? bRow[i] + k : B, bRow[i] != nullptr && inK);
    }
  };
#pragma unroll
  for (int kt = 0; kt < S - 1; kt++) {
    if (kt < KT) issue(kt);
    cpAsyncCommit();
  }
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;

  for (int kt = 0; kt < KT; kt++) {
    cpAsyncWait<S - 2>();  // this thread's copies of stage kt landed
    __syncthreads();       // everyone's; and every thread is done with stage kt - 1, whose buffer is refilled now
    if (kt + S - 1 < KT) issue(kt + S - 1);
    cpAsyncCommit();
    const int s = kt % S;
    const float(*as)[LDS] = As(s);
    const float(*bs)[LDS] = Bs(s);
    if (copyA) {
      const int k = kBegin + kt * BK + kq;
#pragma unroll
      for (int i = 0; i < IT; i++) {
        const int r = (tid + i * kDenseF32Threads) / KCH;
        if (aRow[i] == nullptr || k >= kEnd) continue;
        const float4 v = *reinterpret_cast<const float4*>(&as[r][kq]);
        const long long at = static_cast<long long>(m0 + r) * p.K + k;
        if (p.aCopyElem == DType::kBFloat16) {
          __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.aCopy) + at);
          dst[0] = __floats2bfloat162_rn(v.x, v.y);
          dst[1] = __floats2bfloat162_rn(v.z, v.w);
        } else {
          __half2* dst = reinterpret_cast<__half2*>(static_cast<__half*>(p.aCopy) + at);
          dst[0] = __floats2half2_rn(v.x, v.y);
          dst[1] = __floats2half2_rn(v.z, v.w);
        }
      }
    }
    tf32x3Tile(acc, wm, wn, g, t, [&](int m, int k) { return as[m][k]; }, [&](int n, int k) { return bs[n][k]; });
  }
  cpAsyncWait<0>();

  tf32x3Store(p, acc, m0 + wm, n0 + wn, g, t);
}

}  // namespace gemm
}  // namespace moe
