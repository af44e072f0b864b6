// Grouped GEMM for one or two rows per expert (decode), without tensor cores: each warp owns COLS weight rows
// (columns of C) of its block's expert and streams them with 16-byte loads straight into registers, lane l taking
// the 16-byte chunks l, l + 32, ... of every column, so a warp's load of one column is 512 contiguous bytes. The next
// K step's chunks are loaded while the current step's math runs (two register sets), and the first step's loads are
// issued before the A rows are staged (and, with GemmProblem.preloadB, before the wait for the previous kernel).
// The A rows of the tile (RMAX at a time) sit in shared memory; each lane converts its chunk of A to float32 once per
// row and uses it for all COLS columns. Float32 FMA throughout; the warp's lanes are summed by shuffles and the block
// applies the shared epilogue (bias, SwiGLU x scale, store) and, for the decode down GEMM, the combine tail.
//
// Why not tensor cores here: a 16-row mma tile computes 16 rows for each real one, and its shared-memory ->
// dequantize -> mma chain per fragment left the one-token int4 GEMMs at 12-23% of DRAM peak with 0.2-0.4
// instructions issued per scheduler (BENCHMARKS.md, session 6 cudadec).
#pragma once

#include "gemm_combine_tail.cuh"
#include "gemm_epilogue.cuh"
#include "gemm_scheduler.cuh"

namespace moe {
namespace gemm {

constexpr int kGemvTileRows = 16;  // the scheduler's 16-row tile class
constexpr int kGemvRows = 4;       // RMAX: rows of a tile per pass over the block's weights

// 16-byte streaming load that does not allocate in L1 (weights are read once per tile).
__device__ __forceinline__ uint4 ldStream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <typename Elem>
__device__ __forceinline__ void halfPairToFloat(uint32_t w, float& lo, float& hi) {
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  } else {
    const float2 x = __half22float2(*reinterpret_cast<const __half2*>(&w));
    lo = x.x;
    hi = x.y;
  }
}

// Two float32 values rounded to Elem (one packed conversion) and back.
template <typename Elem>
__device__ __forceinline__ void roundPair(float x0, float x1, float& r0, float& r1) {
  uint32_t w;
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    w = *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(x0, x1);
    w = *reinterpret_cast<const uint32_t*>(&h);
  }
  halfPairToFloat<Elem>(w, r0, r1);
}

// The weight format a kernel streams (BITS 16: half values; 4: int4 codes; 8: int8 codes): K values per lane chunk,
// its 16-byte vectors, and the shared-memory A slots (16 bytes each) one chunk needs. A chunk of 32 K values keeps
// its 64 bytes of A as 4 slots stored swizzled (slot q of chunk kc at kc * 4 + (q ^ ((kc >> 1) & 3))), so that the 8
// lanes of a 128-bit shared-memory phase (8 consecutive chunks) hit 8 distinct bank groups.
// int8: a chunk is one 32-value slot of GemmProblem.bInt8 (two vectors), word 2t + j holding k = 16j + 2t, 2t + 1,
// 2t + 8, 2t + 9.
template <int BITS>
struct GemvFormat {
  static constexpr int kPerChunk = BITS == 16 ? 8 : 32;
  static constexpr int kVecs = BITS == 8 ? 2 : 1;
  static constexpr int kASlots = kPerChunk / 8;
  static __device__ __forceinline__ int slot(int kc, int q) {
    return kASlots == 4 ? kc * 4 + (q ^ ((kc >> 1) & 3)) : kc;
  }
};

// A 32-value chunk kc of one staged A row (4 swizzled slots) as 16 pairs in K order.
template <int BITS>
__device__ __forceinline__ void loadAChunk(const uint4* a, int kc, uint32_t (&ap)[16]) {
#pragma unroll
  for (int q = 0; q < 4; q++) {
    const uint4 v = a[GemvFormat<BITS>::slot(kc, q)];
    ap[4 * q + 0] = v.x;
    ap[4 * q + 1] = v.y;
    ap[4 * q + 2] = v.z;
    ap[4 * q + 3] = v.w;
  }
}

template <typename Elem, int COLS>
struct GemvConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBN = kWarps * COLS;
  // A rows [RMAX][K] in Elem, then the block's results [RMAX][BN] floats; at least the combine tail's scratch.
  static size_t smemBytes(int K) {
    const size_t need = static_cast<size_t>(kGemvRows) * K * sizeof(Elem) + static_cast<size_t>(kGemvRows) * kBN * 4;
    const size_t tail = 3 * kTailMaxPairs * sizeof(int);
    return need > tail ? need : tail;
  }
};

// One lane's share of one K step: the chunk kc of each of the warp's columns (zero past K or N) and, for int4, the
// chunk's group scale (and zero point).
template <int COLS, int VECS>
struct GemvStep {
  uint4 w[COLS][VECS];
  float scale[COLS];
};

// A warp's columns: COLS consecutive weight rows of one expert (cols of them inside N), 16-byte chunks each, and for
// int4 their group scales and zero points (null: symmetric codes).
struct GemvColumns {
  const char* codes;
  size_t rowBytes;
  const float* scales;
  const float* zeros;
  int groups;
  int cols;
};

// int4: the group scale rounded to Elem, as the tensor-core tiles use it (docs/semantics.md section 7).
template <typename Elem, int BITS, int COLS>
__device__ __forceinline__ void gemvLoad(GemvStep<COLS, GemvFormat<BITS>::kVecs>& s, const GemvColumns& w, int kc,
                                         int kChunks, int chunksPerGroup) {
  constexpr int V = GemvFormat<BITS>::kVecs;
  const bool inK = kc < kChunks;
#pragma unroll
  for (int c = 0; c < COLS; c++) {
    const bool ok = inK && c < w.cols;
#pragma unroll
    for (int v = 0; v < V; v++) {
      s.w[c][v] = ok ? ldStream16(w.codes + c * w.rowBytes + (static_cast<size_t>(kc) * V + v) * 16)
                     : make_uint4(0, 0, 0, 0);
    }
    if constexpr (BITS != 16) {
      const float sc = ok ? __ldg(w.scales + c * w.groups + kc / chunksPerGroup) : 0.f;
      s.scale[c] = BITS == 4 ? ElemTraits<Elem>::toFloat(ElemTraits<Elem>::fromFloat(sc)) : sc;
    }
  }
}

// acc[c][r] += the dot of chunk kc of column c with row r of A, for r < rows.
// int4: code n at nibble e of a 16-bit half word is turned into a float exactly by ORing it (in place) into the
// mantissa of 2^(23 - 4e) and subtracting that power of two; symmetric codes subtract 8 in the same addition
// (exact), zero points are taken off once per chunk as zero * sum(a). Rows one at a time (not unrolled: 32 decoded
// A values per row); the few-row tiles of decode hold one or two.
template <typename Elem, int BITS, int COLS, bool ZEROS>
__device__ __forceinline__ void gemvMath(const GemvStep<COLS, GemvFormat<BITS>::kVecs>& s, const GemvColumns& w,
                                         const uint4* As,
                                         int aRowSlots, int kc, int chunksPerGroup, int rows,
                                         float (&acc)[COLS][kGemvRows]) {
  using F = GemvFormat<BITS>;
  if constexpr (BITS == 4) {
    constexpr bool hasZeros = ZEROS;
    constexpr float sym = ZEROS ? 0.f : 8.f;
#pragma unroll 1
    for (int r = 0; r < rows; r++) {
      const uint4* a = As + r * aRowSlots;
      uint32_t ap[16];  // the chunk's 32 A values as 16 pairs, converted where used
      loadAChunk<BITS>(a, kc, ap);
      float asum = 0.f;
      if (hasZeros) {
#pragma unroll
        for (int i = 0; i < 16; i++) {
          float lo, hi;
          halfPairToFloat<Elem>(ap[i], lo, hi);
          asum += lo + hi;
        }
      }
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        const uint32_t words[4] = {s.w[c][0].x, s.w[c][0].y, s.w[c][0].z, s.w[c][0].w};
        float d = 0.f;
#pragma unroll
        for (int q = 0; q < 4; q++) {
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const uint32_t half = h == 0 ? words[q] : words[q] >> 16;
#pragma unroll
            for (int e = 0; e < 4; e++) {
              const uint32_t bits = (half & (0xFu << (4 * e))) | static_cast<uint32_t>(150 - 4 * e) << 23;
              const float code = __uint_as_float(bits) - (static_cast<float>(1 << (23 - 4 * e)) + sym);
              float lo, hi;
              halfPairToFloat<Elem>(ap[(8 * q + 4 * h + e) / 2], lo, hi);
              d = fmaf(code, e % 2 == 0 ? lo : hi, d);
            }
          }
        }
        if (hasZeros && c < w.cols) d = fmaf(-__ldg(w.zeros + c * w.groups + kc / chunksPerGroup), asum, d);
        const float x = d * s.scale[c];
#pragma unroll
        for (int q = 0; q < kGemvRows; q++) if (q == r) acc[c][q] += x;
      }
    }
  } else if constexpr (BITS == 8) {
    // Each code as float32 exactly (its byte offset by 128 as the mantissa of 2^23, minus 2^23 + 128), times the
    // group scale, rounded to Elem: the dequantized copy's weight bit for bit (as the tensor-core tiles' dequantInt8).
#pragma unroll 1
    for (int r = 0; r < rows; r++) {
      const uint4* a = As + r * aRowSlots;
      uint32_t ap[16];
      loadAChunk<BITS>(a, kc, ap);
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        const uint32_t words[8] = {s.w[c][0].x, s.w[c][0].y, s.w[c][0].z, s.w[c][0].w,
                                   s.w[c][1].x, s.w[c][1].y, s.w[c][1].z, s.w[c][1].w};
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
          const uint32_t u = words[i] ^ 0x80808080u;
          const int t = i >> 1, j = i & 1;
#pragma unroll
          for (int b = 0; b < 4; b += 2) {
            const float q0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u + b)) - 8388736.f;
            const float q1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u + b + 1)) - 8388736.f;
            float w0, w1;
            roundPair<Elem>(q0 * s.scale[c], q1 * s.scale[c], w0, w1);
            // bytes b, b + 1 of word 2t + j: k = 16j + 2t + (b == 0 ? 0, 1 : 8, 9)
            const int k0 = 16 * j + 2 * t + (b == 0 ? 0 : 8);
            float a0, a1;
            halfPairToFloat<Elem>(ap[k0 / 2], a0, a1);
            d = fmaf(w0, a0, d);
            d = fmaf(w1, a1, d);
          }
        }
#pragma unroll
        for (int q = 0; q < kGemvRows; q++) if (q == r) acc[c][q] += d;
      }
    }
  } else {
#pragma unroll
    for (int r = 0; r < kGemvRows; r++) {
      if (r >= rows) break;
      const uint4 v = As[r * aRowSlots + kc];
      float av[8];
      halfPairToFloat<Elem>(v.x, av[0], av[1]);
      halfPairToFloat<Elem>(v.y, av[2], av[3]);
      halfPairToFloat<Elem>(v.z, av[4], av[5]);
      halfPairToFloat<Elem>(v.w, av[6], av[7]);
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        float wv[8];
        halfPairToFloat<Elem>(s.w[c][0].x, wv[0], wv[1]);
        halfPairToFloat<Elem>(s.w[c][0].y, wv[2], wv[3]);
        halfPairToFloat<Elem>(s.w[c][0].z, wv[4], wv[5]);
        halfPairToFloat<Elem>(s.w[c][0].w, wv[6], wv[7]);
        float d = acc[c][r];
#pragma unroll
        for (int i = 0; i < 8; i++) d = fmaf(wv[i], av[i], d);
        acc[c][r] = d;
      }
    }
  }
}

// Requires K % PER == 0 (8 half values or 32 int4 codes per chunk), lda % 8 == 0, 16-byte aligned A and B (or
// codes), and for kSwiglu BN % 16 == 0 (whole gate/up column groups of width 8 in a block).
// The block's row tile (findRowTile's answer) in one round of loads instead of a binary search's chain of about
// log2(E) dependent L2 reads: thread t reads expert t's first tile and the next expert's, and its segment bounds; the
// one expert whose tiles span tileIdx publishes its tile in shared memory. Through L2 (__ldcg): with
// GemmProblem.preloadB this runs before the wait for the previous kernel. Block-uniform (two barriers).
template <int BM, int NT>
__device__ __forceinline__ RowTile findRowTileBlock(const GemmProblem& p, int tileIdx) {
  __shared__ RowTile found;
  const int E = p.seg.numExperts;
  const int* prefix = p.seg.tilePrefix + tileClassOf(BM) * (E + 1);
  if (threadIdx.x == 0) found = RowTile{0, 0, 0, false};
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += NT) {
    const int first = __ldcg(prefix + e), next = __ldcg(prefix + e + 1);
    const int start = __ldcg(p.seg.offsets + e), end = __ldcg(p.seg.offsets + e + 1);
    if (first <= tileIdx && tileIdx < next) {
      const int rowStart = start + (tileIdx - first) * BM, rowEnd = min(end, p.M);
      found = RowTile{e, rowStart, rowEnd, rowStart < rowEnd};
    }
  }
  __syncthreads();
  return found;
}

// ZEROS: int4 codes with zero points (a separate instantiation: the zero-point terms cost the symmetric kernel
// registers when chosen at run time).
template <typename Elem, typename OutT, int COLS, Epilogue EPI, int BITS, bool ZEROS>
__global__ void __launch_bounds__(GemvConfig<Elem, COLS>::kThreads) gemvGemmKernel(const GemmProblem p) {
  using Cfg = GemvConfig<Elem, COLS>;
  using F = GemvFormat<BITS>;
  constexpr int BN = Cfg::kBN, NT = Cfg::kThreads;
  static_assert(BITS == 16 || BITS == 4 || BITS == 8, "gemv formats: half values, int4 or int8 codes");
  static_assert(EPI != Epilogue::kSwiglu || BN % 16 == 0, "SwiGLU needs whole column groups");
  extern __shared__ __align__(16) unsigned char smemRaw[];
  const bool early = p.preloadB;  // the segments and B were written before the previous kernel began
  if (!early) awaitPredecessor();
  const RowTile tile = findRowTileBlock<kGemvTileRows, NT>(p, blockIdx.x);
  const int n0 = blockIdx.y * BN;
  if (!tile.valid) {
    if (early) awaitPredecessor();
    if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN>(p, n0, smemRaw);
    return;
  }
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int kChunks = p.K / F::kPerChunk, steps = (kChunks + 31) / 32;
  const int aRowSlots = kChunks * F::kASlots;  // uint4 slots of one staged A row
  const int chunksPerGroup = BITS != 16 ? p.groupSize / 32 : 1;

  // This warp's columns (those past N stream zeros).
  GemvColumns w;
  {
    const int nFirst = n0 + warp * COLS;
    const long long colIdx = static_cast<long long>(tile.expert) * p.N + nFirst;
    w.rowBytes = static_cast<size_t>(p.K) * (BITS == 16 ? sizeof(Elem) * 8 : BITS) / 8;
    const void* codes = BITS == 4 ? static_cast<const void*>(p.bInt4) : BITS == 8 ? static_cast<const void*>(p.bInt8) : p.B;
    w.codes = static_cast<const char*>(codes) + colIdx * w.rowBytes;
    w.groups = BITS != 16 ? p.K / p.groupSize : 0;
    w.scales = BITS != 16 ? p.bScales + colIdx * w.groups : nullptr;
    w.zeros = ZEROS ? p.bZeros + colIdx * w.groups : nullptr;
    w.cols = max(0, min(COLS, p.N - nFirst));
  }
  GemvStep<COLS, F::kVecs> s0, s1;
  gemvLoad<Elem, BITS, COLS>(s0, w, lane, kChunks, chunksPerGroup);
  if (early) awaitPredecessor();

  Elem* As = reinterpret_cast<Elem*>(smemRaw);
  float* res = reinterpret_cast<float*>(smemRaw + static_cast<size_t>(kGemvRows) * p.K * sizeof(Elem));
  const Elem* A = static_cast<const Elem*>(p.A);
  const float* bias = p.bias ? p.bias + static_cast<long long>(tile.expert) * p.N : nullptr;
  const int tileEnd = min(tile.rowStart + kGemvTileRows, tile.rowEnd);
  const int aChunks = p.K / 8;  // 16-byte chunks of an A row
  bool firstPass = true;
  for (int r0 = tile.rowStart; r0 < tileEnd; r0 += kGemvRows) {
    const int rows = min(kGemvRows, tileEnd - r0);
    if (!firstPass) gemvLoad<Elem, BITS, COLS>(s0, w, lane, kChunks, chunksPerGroup);
    firstPass = false;
    for (int c = tid; c < rows * aChunks; c += NT) {
      const int r = c / aChunks, j = c % aChunks;
      const int src = sourceRow(p, r0 + r);
      uint4 v = make_uint4(0, 0, 0, 0);
      if (src >= 0) v = __ldg(reinterpret_cast<const uint4*>(A + static_cast<long long>(src) * p.lda) + j);
      const int slot = F::kASlots == 4 ? F::slot(j / 4, j % 4) : j;
      reinterpret_cast<uint4*>(As)[r * aRowSlots + slot] = v;
    }
    __syncthreads();

    float acc[COLS][kGemvRows];
#pragma unroll
    for (int c = 0; c < COLS; c++)
#pragma unroll
      for (int r = 0; r < kGemvRows; r++) acc[c][r] = 0.f;
    const uint4* Av = reinterpret_cast<const uint4*>(As);
    for (int st = 0; st < steps; st += 2) {
      const int kc = lane + 32 * st;
      if (st + 1 < steps) gemvLoad<Elem, BITS, COLS>(s1, w, kc + 32, kChunks, chunksPerGroup);
      if (kc < kChunks) gemvMath<Elem, BITS, COLS, ZEROS>(s0, w, Av, aRowSlots, kc, chunksPerGroup, rows, acc);
      if (st + 1 < steps) {
        if (st + 2 < steps) gemvLoad<Elem, BITS, COLS>(s0, w, kc + 64, kChunks, chunksPerGroup);
        if (kc + 32 < kChunks) gemvMath<Elem, BITS, COLS, ZEROS>(s1, w, Av, aRowSlots, kc + 32, chunksPerGroup, rows, acc);
      }
    }
#pragma unroll
    for (int r = 0; r < kGemvRows; r++) {
      if (r >= rows) break;
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        float v = acc[c][r];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) res[r * BN + warp * COLS + c] = v;
      }
    }
    __syncthreads();

    epilogueFromShared<OutT, EPI, BN, NT>(p, bias, r0, rows, n0, res, tid);
    __syncthreads();  // As and res are rewritten by the next pass (or the combine tail's scratch)
  }
  if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN>(p, n0, smemRaw);
}

}  // namespace gemm
}  // namespace moe
