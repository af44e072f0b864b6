// Grouped GEMM for decode sizes (a few rows per expert): weight streaming on CUDA cores. With one or two rows per
// expert a 16-row tensor-core tile wastes 15/16 of its math and holds few bytes in flight; here each warp streams
// COLS weight rows ([N][K], K contiguous) with 16-byte loads straight into registers (the next K step's loads
// issued before the current step's math), dots them with the segment's rows (staged once per block in shared
// memory), reduces across the warp, and the block applies the shared epilogue (bias, SwiGLU x scale, store or
// accumulate). The row tiles are the 16-row class of the scheduler; a tile's rows are taken RMAX at a time.
#pragma once

#include "gemm_epilogue.cuh"
#include "gemm_scheduler.cuh"

namespace moe {
namespace gemm {

constexpr int kStreamWarps = 4;
constexpr int kStreamRows = 4;  // RMAX: rows of a tile per pass over the block's weights
constexpr int kStreamTileRows = 16;

// 16-byte chunk of 8 half-precision values -> 8 floats.
template <typename Elem>
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    } else {
      const __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
      const float2 x = __half22float2(h);
      f[2 * i] = x.x;
      f[2 * i + 1] = x.y;
    }
  }
}

// How a weight format streams: kPerChunk K values per 16-byte chunk (8 half values, or 32 int4 codes).
template <int BITS> struct StreamFormat { static constexpr int kPerChunk = 128 / BITS; };

// The weight rows and group scales one warp streams: COLS columns of one expert.
template <int COLS>
struct WarpColumns {
  const uint4* codes[COLS];   // [K / kPerChunk] chunks each; null past N
  const float* scales[COLS];  // int4: [K / groupSize]
  const float* zeros[COLS];   // int4 with zero points
};

template <typename Elem, int BITS, int COLS>
__device__ __forceinline__ WarpColumns<COLS> warpColumns(const GemmProblem& p, int expert, int nFirst) {
  WarpColumns<COLS> w;
  const int groups = BITS == 4 ? (p.K + p.groupSize - 1) / p.groupSize : 0;
#pragma unroll
  for (int c = 0; c < COLS; c++) {
    const int n = nFirst + c;
    const long long col = static_cast<long long>(expert) * p.N + n;
    const bool ok = n < p.N;
    if (BITS == 4) {
      w.codes[c] = ok ? reinterpret_cast<const uint4*>(p.bInt4 + col * (p.K / 8)) : nullptr;
      w.scales[c] = ok ? p.bScales + col * groups : nullptr;
      w.zeros[c] = ok && p.bZeros ? p.bZeros + col * groups : nullptr;
    } else {
      w.codes[c] = ok ? reinterpret_cast<const uint4*>(static_cast<const Elem*>(p.B) + col * p.K) : nullptr;
      w.scales[c] = nullptr;
      w.zeros[c] = nullptr;
    }
  }
  return w;
}

// sum over the chunk of w * a: half weights (8 values), or int4 codes (32) as scale * sum((code - zero) * a).
// (code - zero) is formed exactly: the code ORed into the mantissa of 2^23, minus 2^23 + zero.
template <typename Elem, int BITS>
__device__ __forceinline__ float chunkDot(const uint4& w, const uint4* a, float scale, float zero) {
  if constexpr (BITS == 16) {
    float av[8], wv[8];
    unpack8<Elem>(a[0], av);
    unpack8<Elem>(w, wv);
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++) s = fmaf(av[e], wv[e], s);
    return s;
  } else {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    const float bias = 8388608.f + zero;
    float s = 0.f;
#pragma unroll
    for (int q = 0; q < 4; q++) {
      float av[8];
      unpack8<Elem>(a[q], av);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        const float c = __uint_as_float(0x4B000000u | ((words[q] >> (4 * e)) & 0xFu)) - bias;
        s = fmaf(c, av[e], s);
      }
    }
    return s * scale;
  }
}

// One warp's pass over K: the dot products of its COLS weight rows with `rows` (<= ROWS) rows of A staged in
// shared memory ([ROWS][K] in Elem), summed over the warp (every lane ends with the sums). Each lane issues the
// loads of DEPTH chunks of every column before any math (COLS x DEPTH x 16 bytes in flight per lane): a short K
// (2048 half values are 8 chunks per lane) is then one round trip to memory, not one per chunk.
template <typename Elem, int BITS, int COLS, int ROWS>
__device__ __forceinline__ void streamDot(const WarpColumns<COLS>& w, const uint4* As, int rows, int K, int groupSize,
                                          int lane, float (&acc)[COLS][ROWS]) {
  constexpr int PER = StreamFormat<BITS>::kPerChunk, AQ = PER / 8;  // A chunks (8 values) per weight chunk
  constexpr int DEPTH = BITS == 16 ? 4 : 2;
  const int kChunks = K / PER, aRow = K / 8;
  const int chunksPerGroup = BITS == 4 ? groupSize / PER : 1;
#pragma unroll
  for (int c = 0; c < COLS; c++)
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[c][r] = 0.f;
  for (int k0 = lane; k0 < kChunks; k0 += 32 * DEPTH) {
    uint4 v[COLS][DEPTH];
    float sc[COLS][DEPTH], ze[COLS][DEPTH];
#pragma unroll
    for (int c = 0; c < COLS; c++) {
#pragma unroll
      for (int d = 0; d < DEPTH; d++) {
        const int kc = k0 + 32 * d;
        const bool ok = w.codes[c] != nullptr && kc < kChunks;
        v[c][d] = ok ? __ldg(w.codes[c] + kc) : make_uint4(0, 0, 0, 0);
        if (BITS == 4) {
          sc[c][d] = ok ? __ldg(w.scales[c] + kc / chunksPerGroup) : 0.f;
          ze[c][d] = ok && w.zeros[c] ? __ldg(w.zeros[c] + kc / chunksPerGroup) : 8.f;
        } else {
          sc[c][d] = 1.f;
          ze[c][d] = 0.f;
        }
      }
    }
#pragma unroll
    for (int d = 0; d < DEPTH; d++) {
      const int kc = k0 + 32 * d;
      if (kc >= kChunks) break;
      if constexpr (BITS == 4) {
        // Rows one at a time: unrolled, the 32 decoded codes of every column would be kept for all rows (250+
        // registers); a tile's extra rows re-decode instead (decode tiles hold one or two).
#pragma unroll 1
        for (int r = 0; r < rows; r++) {
          const uint4* a = As + r * aRow + kc * AQ;
#pragma unroll
          for (int c = 0; c < COLS; c++) {
            const float x = chunkDot<Elem, BITS>(v[c][d], a, sc[c][d], ze[c][d]);
#pragma unroll
            for (int q = 0; q < ROWS; q++) if (q == r) acc[c][q] += x;
          }
        }
      } else {
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          if (r >= rows) break;
          const uint4* a = As + r * aRow + kc * AQ;
#pragma unroll
          for (int c = 0; c < COLS; c++) acc[c][r] += chunkDot<Elem, BITS>(v[c][d], a, sc[c][d], ze[c][d]);
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < COLS; c++)
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[c][r] += __shfl_xor_sync(0xffffffffu, acc[c][r], o);
}

template <typename Elem, int COLS>
struct StreamConfig {
  static constexpr int kThreads = kStreamWarps * 32;
  static constexpr int kBN = kStreamWarps * COLS;  // columns per block
  // A rows [RMAX][K] in Elem, then the block's results [RMAX][BN] floats.
  static size_t smemBytes(int K) {
    return static_cast<size_t>(kStreamRows) * K * sizeof(Elem) + static_cast<size_t>(kStreamRows) * kBN * 4;
  }
};

// Requires K % 8 == 0, lda % 8 == 0, 16-byte aligned A and B (the VEC condition), and for kSwiglu BN % 16 == 0
// (each block holds whole gate/up column groups of width 8).
template <typename Elem, typename OutT, int COLS, Epilogue EPI, int BITS>
__global__ void __launch_bounds__(kStreamWarps * 32) streamGemmKernel(const GemmProblem p) {
  awaitPredecessor();
  using Cfg = StreamConfig<Elem, COLS>;
  constexpr int BN = Cfg::kBN, NT = Cfg::kThreads;
  static_assert(EPI != Epilogue::kSwiglu || BN % 16 == 0, "SwiGLU needs whole column groups");
  extern __shared__ __align__(16) unsigned char smemRaw[];
  Elem* As = reinterpret_cast<Elem*>(smemRaw);
  float* res = reinterpret_cast<float*>(smemRaw + static_cast<size_t>(kStreamRows) * p.K * sizeof(Elem));

  const RowTile tile = findRowTile<kStreamTileRows>(p, blockIdx.x);
  if (!tile.valid) return;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const Elem* A = static_cast<const Elem*>(p.A);
  const float* bias = p.bias ? p.bias + static_cast<long long>(tile.expert) * p.N : nullptr;
  const int tileEnd = min(tile.rowStart + kStreamTileRows, tile.rowEnd);
  const int kChunks = p.K / 8;  // of A
  // This warp's weight rows (a column past N streams nothing and yields 0).
  const WarpColumns<COLS> wc = warpColumns<Elem, BITS, COLS>(p, tile.expert, n0 + warp * COLS);

  for (int r0 = tile.rowStart; r0 < tileEnd; r0 += kStreamRows) {
    const int rows = min(kStreamRows, tileEnd - r0);
    // Stage the rows (gathered through the row index) in shared memory.
    for (int c = tid; c < rows * kChunks; c += NT) {
      const int r = c / kChunks, kc = c % kChunks;
      const int src = sourceRow(p, r0 + r);
      uint4 v = make_uint4(0, 0, 0, 0);
      if (src >= 0) v = reinterpret_cast<const uint4*>(A + static_cast<long long>(src) * p.lda)[kc];
      reinterpret_cast<uint4*>(As)[r * kChunks + kc] = v;
    }
    __syncthreads();

    float acc[COLS][kStreamRows];
    streamDot<Elem, BITS, COLS, kStreamRows>(wc, reinterpret_cast<const uint4*>(As), rows, p.K, p.groupSize, lane, acc);
#pragma unroll
    for (int c = 0; c < COLS; c++)
#pragma unroll
      for (int r = 0; r < kStreamRows; r++)
        if (lane == 0) res[r * BN + warp * COLS + c] = acc[c][r];
    __syncthreads();

    using E = Epi<OutT, EPI>;
    if (EPI == Epilogue::kSwiglu) {
      // Packed columns n0 + 16j + q (q < 8) are gate columns, n0 + 16j + 8 + q their up partners.
      for (int idx = tid; idx < rows * (BN / 2); idx += NT) {
        const int r = idx / (BN / 2), j = (idx % (BN / 2)) / 8, q = idx % 8;
        const int gcol = n0 + 16 * j + q;
        const int i = (gcol / 16) * 8 + q;
        E::swiglu(p, bias, r0 + r, E::rowScale(p, r0 + r), gcol, gcol + 8, i, res[r * BN + 16 * j + q],
                  res[r * BN + 16 * j + 8 + q]);
      }
    } else {
      for (int idx = tid; idx < rows * (BN / 2); idx += NT) {
        const int r = idx / (BN / 2), c = 2 * (idx % (BN / 2));
        E::store2(p, bias, r0 + r, n0 + c, res[r * BN + c], res[r * BN + c + 1]);
      }
    }
    __syncthreads();  // As and res are rewritten by the next pass
  }
}

// Epilogue::kCombine (grouped_gemm.h): block (token t, BN columns). The token's k rows are staged once; for each
// pair in slot order the warp streams that expert's weight rows, reduces, and adds the weighted result, so every
// output element is summed in the combine kernel's order (deterministic, no atomics).
template <typename Elem>
size_t streamCombineSmemBytes(int K, int topK) { return static_cast<size_t>(topK) * K * sizeof(Elem); }

template <typename Elem, int COLS, int BITS>
__global__ void __launch_bounds__(kStreamWarps * 32) streamCombineKernel(const GemmProblem p) {
  awaitPredecessor();
  constexpr int BN = kStreamWarps * COLS, NT = kStreamWarps * 32;
  extern __shared__ __align__(16) unsigned char smemRaw[];
  Elem* As = reinterpret_cast<Elem*>(smemRaw);
  const int t = blockIdx.x;
  if (t >= p.M) return;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int k = p.topK, kChunks = p.K / 8;
  const Elem* A = static_cast<const Elem*>(p.A);
  for (int c = tid; c < k * kChunks; c += NT) {
    const int j = c / kChunks, kc = c % kChunks;
    const int row = p.pairRow[t * k + j];
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row >= 0 && row < p.aRows) v = reinterpret_cast<const uint4*>(A + static_cast<long long>(row) * p.lda)[kc];
    reinterpret_cast<uint4*>(As)[j * kChunks + kc] = v;
  }
  __syncthreads();

  float out[COLS];
#pragma unroll
  for (int c = 0; c < COLS; c++) out[c] = 0.f;
  for (int j = 0; j < k; j++) {
    const int row = p.pairRow[t * k + j];
    const int e = p.pairExpert[t * k + j];
    const float w = p.pairWeight[t * k + j];
    const bool expertOk = e >= 0 && e < p.seg.numExperts;
    if (row >= 0 && row < p.aRows) {  // a valid row has a valid expert (the permute maps others to -1)
      const WarpColumns<COLS> wc = warpColumns<Elem, BITS, COLS>(p, e, n0 + warp * COLS);
      float acc[COLS][1];
      streamDot<Elem, BITS, COLS, 1>(wc, reinterpret_cast<const uint4*>(As) + j * kChunks, 1, p.K, p.groupSize, lane,
                                     acc);
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        const float v = acc[c][0];
        out[c] += p.weightsApplied ? v : w * v;
      }
    }
    if (p.bias != nullptr && expertOk) {
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        const int n = n0 + warp * COLS + c;
        if (n < p.N) out[c] += w * p.bias[static_cast<long long>(e) * p.N + n];
      }
    }
    if (p.identityX != nullptr && e >= p.seg.numExperts) {
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        const int n = n0 + warp * COLS + c;
        if (n < p.N) out[c] += w * p.identityX[static_cast<long long>(t) * p.ldc + n];
      }
    }
  }
  float* C = static_cast<float*>(p.C) + static_cast<long long>(t) * p.ldc;
#pragma unroll
  for (int c = 0; c < COLS; c++) {
    const int n = n0 + warp * COLS + c;
    if (lane == c && n < p.N) C[n] = out[c];
  }
}

}  // namespace gemm
}  // namespace moe
