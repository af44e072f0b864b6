// Grouped GEMM math core on tensor cores (bf16/f16 operands, f32 accumulation).
#pragma once

#include <type_traits>

#include "gemm_combine_tail.cuh"
#include "gemm_epilogue.cuh"
#include "gemm_ptx.cuh"
#include "gemm_scheduler.cuh"

namespace moe {
namespace gemm {

// ---- tensor-core core ----
// BITS 16: B is Elem [E][N][K]. BITS 4 (W4A16): B is the int4 copy (GemmProblem.bInt4: [E][N][K/8] words of 8 codes,
// group scales and zero points [E][N][K/groupSize]); a stage holds code rows of BK/8 words and each row's scale
// (and zero) for every 32 values of K, and the B fragments are dequantized in registers (see dequantPair). BITS 8
// (W8A16): B is the int8 copy (GemmProblem.bInt8: [E][N][K/4] words in fragment order, group scales [E][N][K/groupSize]);
// a stage holds code rows of BK/4 words and a scale per 32 values of K (see dequantInt8). BITS kMxfp4Bits: B is the
// mxfp4 copy (GemmProblem.bFp4: int4's code layout and stages without zero slots, E2M1 codes; see dequantFp4).
constexpr int kMxfp4Bits = 6;
template <typename Elem, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, int BITS = 16>
struct MmaConfig {
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kRowStride = BK + 8;  // +16 bytes: the 8 rows an ldmatrix reads land on distinct banks
  // +4 words (int4), +8 (int8, read as 8-byte pairs by half warps): the 8 code rows of a fragment on distinct banks
  static constexpr int kCodeRowWords = BITS == 8 ? BK / 4 + 8 : BK / 8 + 4;
  static constexpr int kSlots = BK / 32;            // scale (zero) slots per code row and stage
  static constexpr int kBStageBytes = BITS == 16 ? BN * kRowStride * static_cast<int>(sizeof(Elem))
                                      : BN * (kCodeRowWords + (BITS == 8 || BITS == kMxfp4Bits ? 1 : 2) * kSlots) * 4;
  static constexpr int kSmemBytes = STAGES * (BM * kRowStride * static_cast<int>(sizeof(Elem)) + kBStageBytes);
  // int4 without zero points (GemmProblem.int4ScaleVectors and bZeros null): no zero slots in a stage, so the 16 x 64
  // decode tiles fit five blocks per SM instead of four.
  static constexpr int kSmemBytesNoZeros =
      BITS == 16 ? kSmemBytes : STAGES * (BM * kRowStride * static_cast<int>(sizeof(Elem)) + BN * (kCodeRowWords + kSlots) * 4);
};

__device__ __forceinline__ void cpAsync4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 4 : 0));
}
// BYTES 4, 8 or 16 (cp.async's sizes); invalid: zero-filled, nothing read.
template <int BYTES>
__device__ __forceinline__ void cpAsyncN(void* smem, const void* gmem, bool valid) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async size");
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(gmem), "n"(BYTES), "r"(valid ? BYTES : 0));
}

// W4A16 fragments with two integer instructions per pair of weights. Thread (g, t) of an m16n8k16 mma holds, in
// each B register, the K positions 2t and 2t+1 (low, high half). The int4 copy packs 8 codes per word, code i at
// nibble i; instead of moving nibbles 2t and 2t+1 together (shifts and masks per pair), thread t takes nibbles t
// and t+4 with one shift and one lop3: (w >> 4t) & 0x000F000F lands them in the two mantissas of a bf16 (f16) pair
// whose OR-ed exponent makes the values 128 + c (1024 + c) exactly. The tile's A rows are permuted in shared memory
// to the same order within every 8 K values (permuteAStage), so the mma pairs the same products as before.
// Then minus (128 + z) gives c - z exactly (small integers) and one multiply by the group scale rounds once (the
// dequantized copy rounds s * (c - z) once from the float scale: the results differ by at most an ulp of the weight).
template <typename Elem>
__device__ __forceinline__ uint32_t dequantPair(uint32_t word, int shift, uint32_t biasPair, uint32_t scalePair) {
  constexpr uint32_t kMagic = std::is_same<Elem, __nv_bfloat16>::value ? 0x43004300u : 0x64006400u;
  uint32_t v;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(v) : "r"(word >> shift), "n"(0x000F000F), "n"(kMagic));
  uint32_t r;
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&v), *reinterpret_cast<const __nv_bfloat162*>(&biasPair));
    const __nv_bfloat162 w = __hmul2(d, *reinterpret_cast<const __nv_bfloat162*>(&scalePair));
    r = *reinterpret_cast<const uint32_t*>(&w);
  } else {
    const __half2 d = __hsub2(*reinterpret_cast<const __half2*>(&v), *reinterpret_cast<const __half2*>(&biasPair));
    const __half2 w = __hmul2(d, *reinterpret_cast<const __half2*>(&scalePair));
    r = *reinterpret_cast<const uint32_t*>(&w);
  }
  return r;
}

// The order dequantPair's fragments expect A in: within every 8 K values, position 2t holds K t and 2t+1 holds K t+4
// ([0 4 1 5 2 6 3 7]), so the pair an ldmatrix gives thread t is (A[t], A[t+4]). In place on one landed stage, for its
// first `rows` rows (the others are zero-filled and stay zero); four byte permutes per 16 bytes.
template <int LDS, int KCH, int NT, typename Elem>
__device__ __forceinline__ void permuteAStage(Elem* as, int rows, int tid) {
  for (int c = tid; c < rows * KCH; c += NT) {
    uint4* p = reinterpret_cast<uint4*>(as + (c / KCH) * LDS + (c % KCH) * 8);
    const uint4 v = *p;
    uint4 o;
    o.x = __byte_perm(v.x, v.z, 0x5410);
    o.y = __byte_perm(v.x, v.z, 0x7632);
    o.z = __byte_perm(v.y, v.w, 0x5410);
    o.w = __byte_perm(v.y, v.w, 0x7632);
    *p = o;
  }
}

// W8A16 fragments: one int8 code word holds the four K positions thread t of an m16n8k16 mma needs for one B column
// (k 2t, 2t+1 for the low register, 2t+8, 2t+9 for the high one: the pack order of GemmProblem.bInt8). Each code
// becomes float32 exactly (its byte, offset by 128, as the mantissa of 2^23, minus 2^23 + 128), is multiplied by the
// group scale in float32 (the one rounding of docs/formats.md, w = s * q) and rounded to Elem: bit for bit the
// weight the dequantized copy holds.
template <typename Elem>
__device__ __forceinline__ void dequantInt8(uint32_t word, float scale, uint32_t& lo, uint32_t& hi) {
  const uint32_t u = word ^ 0x80808080u;
  float w[4];
#pragma unroll
  for (int i = 0; i < 4; i++) w[i] = (__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u + i)) - 8388736.f) * scale;
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 a = __floats2bfloat162_rn(w[0], w[1]), b = __floats2bfloat162_rn(w[2], w[3]);
    lo = *reinterpret_cast<const uint32_t*>(&a);
    hi = *reinterpret_cast<const uint32_t*>(&b);
  } else {
    const __half2 a = __floats2half2_rn(w[0], w[1]), b = __floats2half2_rn(w[2], w[3]);
    lo = *reinterpret_cast<const uint32_t*>(&a);
    hi = *reinterpret_cast<const uint32_t*>(&b);
  }
}

// mxfp4 fragments: nibbles t and t+4 of a code word (A permuted as for int4, permuteAStage). An E2M1 code's three
// magnitude bits placed at float32 bits 24..22 give E2M1(c) * 2^-126 exactly (exponent field e, one mantissa bit;
// e = 0 the subnormal 0 or 2^-127), its sign bit at bit 31; times 2^126, then times the block scale 2^(b-127), both
// exact (two significant bits) except where float32 overflows, as docs/formats.md's product; rounded to Elem: the
// dequantized copy's weights bit for bit.
template <typename Elem>
__device__ __forceinline__ uint32_t dequantFp4(uint32_t word, int shift, float scale) {
  const uint32_t c0 = (word >> shift) & 0xFu, c1 = (word >> (shift + 16)) & 0xFu;
  const float w0 = __uint_as_float(((c0 & 7u) << 22) | ((c0 & 8u) << 28)) * 0x1p126f * scale;
  const float w1 = __uint_as_float(((c1 & 7u) << 22) | ((c1 & 8u) << 28)) * 0x1p126f * scale;
  uint32_t r;
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(w0, w1);
    r = *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(w0, w1);
    r = *reinterpret_cast<const uint32_t*>(&h);
  }
  return r;
}

template <typename Elem>
__device__ __forceinline__ uint32_t pairOf2(float v) {
  uint32_t r;
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(v, v);
    r = *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(v, v);
    r = *reinterpret_cast<const uint32_t*>(&h);
  }
  return r;
}

// BITS 5 (A/B only, MOE_CUDA_GEMM_TILES 'int4-previous'): the same int4 tiles with the previous fragment decode, one
// pair of nibbles 2t, 2t+1 at a time (about 3.5 integer instructions per weight; bf16 decode tiles only).
template <typename Elem>
__device__ __forceinline__ uint32_t dequant2(uint32_t byte, uint32_t biasPair, uint32_t scalePair) {
  constexpr uint32_t kMagic = std::is_same<Elem, __nv_bfloat16>::value ? 0x43004300u : 0x64006400u;
  const uint32_t v = (byte & 0xFu) | ((byte & 0xF0u) << 12) | kMagic;
  const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&v), *reinterpret_cast<const __nv_bfloat162*>(&biasPair));
  const __nv_bfloat162 w = __hmul2(d, *reinterpret_cast<const __nv_bfloat162*>(&scalePair));
  return *reinterpret_cast<const uint32_t*>(&w);
}
template <typename Elem>
__device__ __forceinline__ uint32_t pairOf(float v) {
  const Elem h = ElemTraits<Elem>::fromFloat(v);
  const uint16_t b = *reinterpret_cast<const uint16_t*>(&h);
  return static_cast<uint32_t>(b) | (static_cast<uint32_t>(b) << 16);
}

// GemmProblem.prefetchB: before waiting for the previous kernel, ask L2 for this block's weight rows. The segments
// were written two kernels back (see prefetchB), so they are read through L2 (__ldcg), never a stale L1 line.
template <int BM, int BN, int BITS, typename Elem>
__device__ __forceinline__ void prefetchWeightTile(const GemmProblem& p, int tileIdx, int colTile) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int E = p.seg.numExperts;
  const int* prefix = p.seg.tilePrefix + tileClassOf(BM) * (E + 1);
  if (tileIdx >= __ldcg(prefix + E)) return;
  int lo = 0, hi = E - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldcg(prefix + mid) <= tileIdx) lo = mid; else hi = mid - 1;
  }
  // Only the expert's first row tile asks: the others read the same weights.
  if (tileIdx != __ldcg(prefix + lo)) return;
  const size_t rowBytes = BITS == 8 ? static_cast<size_t>(p.K)
                          : BITS != 16 ? static_cast<size_t>(p.K) / 2 : static_cast<size_t>(p.K) * sizeof(Elem);
  const char* base = BITS == 8 ? reinterpret_cast<const char*>(p.bInt8)
                     : BITS == kMxfp4Bits ? reinterpret_cast<const char*>(p.bFp4)
                     : BITS != 16 ? reinterpret_cast<const char*>(p.bInt4) : static_cast<const char*>(p.B);
  base += static_cast<size_t>(lo) * p.N * rowBytes;
  const int n0 = colTile * BN;
  if (rowBytes < 16) return;
  for (int r = threadIdx.x; r < BN && n0 + r < p.N; r += blockDim.x) {
    const char* row = base + static_cast<size_t>(n0 + r) * rowBytes;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(row), "r"(static_cast<unsigned>(rowBytes & ~size_t(15))) : "memory");
  }
#endif
}

// GemmProblem.prefetchNext: this block's share of its expert's next-GEMM weights, asked of L2 in 4 KB pieces.
template <int NT>
__device__ __forceinline__ void prefetchNextWeights(const GemmProblem& p, int expert, int colTile, int colTiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const long long bytes = p.prefetchNextBytes;
  const long long slice = ((bytes + colTiles - 1) / colTiles + 15) & ~15ll;
  const long long start = static_cast<long long>(colTile) * slice;
  const char* base = static_cast<const char*>(p.prefetchNext) + static_cast<long long>(expert) * bytes;
  for (long long off = start + static_cast<long long>(threadIdx.x) * 4096; off < start + slice && off < bytes;
       off += static_cast<long long>(NT) * 4096) {
    const long long n = min(min(4096ll, start + slice - off), bytes - off) & ~15ll;
    if (n > 0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(base + off), "r"(static_cast<unsigned>(n)) : "memory");
  }
#endif
}

// VEC: K % 8 == 0, lda % 8 == 0 and 16-byte aligned bases, so every 16-byte chunk is wholly in or out of
// bounds and cp.async can move it; otherwise elements are loaded one by one (odd test shapes only).
// FRAG_BUFS: 1 or 2 register sets of mma fragments (2: the next K step's loaded while this one's mma run).
template <typename Elem, typename OutT, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, Epilogue EPI,
          bool VEC, int BITS = 16, int FRAG_BUFS = 1>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    mmaGemmKernel(const GemmProblem p) {
  const int rowTileIdx = p.colTilesFirst ? blockIdx.y : blockIdx.x;
  const int colTile = p.colTilesFirst ? blockIdx.x : blockIdx.y;
  const int colTiles = p.colTilesFirst ? gridDim.x : gridDim.y;
  if (VEC && p.prefetchB) prefetchWeightTile<BM, BN, BITS, Elem>(p, rowTileIdx, colTile);
  // GemmProblem.preloadB: the tile lookup and the first stages' weights do not depend on the previous kernel, so a
  // block placed early (programmatic dependent launch) issues them before it waits; only A waits.
  const bool early = VEC && p.preloadB;
  if (!early) awaitPredecessor();
  using Cfg = MmaConfig<Elem, BM, BN, BK, WARPS_M, WARPS_N, STAGES, BITS>;
  static_assert(Cfg::kSmemBytesNoZeros >= 3 * kTailMaxPairs * 4, "the combine tail reuses the pipeline's shared memory");
  constexpr bool Q = BITS != 16, QPREV = BITS == 5;
  static_assert(BITS == 16 || BITS == 4 || BITS == 8 || BITS == kMxfp4Bits || (QPREV && std::is_same<Elem, __nv_bfloat16>::value), "B element bits");
  static_assert(!Q || (VEC && BK % 32 == 0), "int4 / int8 tiles: vector loads, whole 32-code slots");
  constexpr int QROW = Cfg::kCodeRowWords, QSL = Cfg::kSlots;
  // Codes per 32-bit word and per 16-byte chunk; chunks per code row and stage.
  constexpr int QPW = BITS == 8 ? 4 : 8, QCODES = 4 * QPW, QCH = BK / QCODES;
  static_assert(BITS != 8 || QROW % 32 == 8 || QROW % 32 == 24, "int8 code rows: a half warp's pairs on distinct banks");
  constexpr int Q_CHUNKS = BN * QCH, Q_IT = (Q_CHUNKS + Cfg::kThreads - 1) / Cfg::kThreads;
  constexpr int S_ENTRIES = BN * QSL, S_IT = (S_ENTRIES + Cfg::kThreads - 1) / Cfg::kThreads;
  // GemmProblem.int4ScaleVectors: a code row's QSL scales (zeros) of a stage in vectors of SV floats.
  constexpr int SV = QSL >= 4 ? 4 : (QSL >= 1 ? QSL : 1);
  constexpr int SV_CHUNKS = BN * QSL / SV, SV_IT = (SV_CHUNKS + Cfg::kThreads - 1) / Cfg::kThreads;
  constexpr int NT = Cfg::kThreads;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  constexpr int MI = WM / 16, NI = WN / 8;
  constexpr int LDS = Cfg::kRowStride;
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0, "tile shape");
  static_assert(FRAG_BUFS == 1 || FRAG_BUFS == 2, "fragment buffers");
  constexpr int KCH = BK / 8;  // 16-byte chunks per tile row
  constexpr int A_CHUNKS = BM * KCH, A_IT = (A_CHUNKS + NT - 1) / NT;
  constexpr int B_CHUNKS = BN * KCH, B_IT = (B_CHUNKS + NT - 1) / NT;

  extern __shared__ __align__(16) unsigned char smemRaw[];
  Elem* As = reinterpret_cast<Elem*>(smemRaw);
  Elem* Bs = As + STAGES * BM * LDS;
  // int4: per stage [BN][QROW] code words, then [BN][QSL] scales, then [BN][QSL] zeros
  uint32_t* Bq = reinterpret_cast<uint32_t*>(As + STAGES * BM * LDS);
  // (the zero slots only with zero points under int4ScaleVectors: the launcher sized shared memory to match)
  const int QSTAGE = BN * (QROW + (BITS == 8 || BITS == kMxfp4Bits || (BITS == 4 && p.int4ScaleVectors && p.bZeros == nullptr) ? 1 : 2) * QSL);

  const RowTile tile = findRowTile<BM>(p, rowTileIdx);
  const int n0 = colTile * BN;
  if (!tile.valid) {
    if (early) awaitPredecessor();
    if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN>(p, n0, smemRaw);
    return;
  }
  const int tid = threadIdx.x;
  if (VEC && p.prefetchNext != nullptr && p.seg.offsets != nullptr &&
      tile.rowStart == __ldcg(p.seg.offsets + tile.expert)) {
    prefetchNextWeights<Cfg::kThreads>(p, tile.expert, colTile, colTiles);
  }
  const Elem* A = static_cast<const Elem*>(p.A);
  const Elem* B = static_cast<const Elem*>(p.B) + static_cast<long long>(tile.expert) * p.N * p.K;
  const Elem zero = ElemTraits<Elem>::fromFloat(0.f);

  // The rows each thread loads are the same for every k step: resolve the gather once.
  const Elem* aRow[A_IT];
  const Elem* bRow[B_IT];
  if (!early) gatherRows<A_IT, NT, KCH, A_CHUNKS>(p, tile, A, tid, aRow);
  if constexpr (!Q) weightRows<B_IT, NT, KCH, B_CHUNKS>(p, n0, B, tid, bRow);
  // int4: the code rows and scale rows this thread loads (null past N)
  const int kWords = p.K / QPW, groups = Q ? (p.K + p.groupSize - 1) / p.groupSize : 0;
  const uint32_t* qRow[Q ? Q_IT : 1];
  const float* sRow[Q ? S_IT : 1];
  const float* zRow[Q ? S_IT : 1];
  // Vector scale loads: groupSize 32 and whole stages make a row's slots of a stage QSL consecutive groups.
  const bool scaleVec = (BITS == 4 || BITS == 8 || BITS == kMxfp4Bits) && VEC && p.int4ScaleVectors && p.groupSize == 32 && p.K % BK == 0;
  long long svRow[Q ? SV_IT : 1];  // element offset of the row's first group in bScales / bZeros; -1 past N
  if constexpr (Q) {
    const long long base = static_cast<long long>(tile.expert) * p.N;
#pragma unroll
    for (int i = 0; i < SV_IT; i++) {
      const int c = tid + i * NT, n = n0 + c / (QSL / SV);
      svRow[i] = (c < SV_CHUNKS && n < p.N) ? (base + n) * groups : -1;
    }
#pragma unroll
    for (int i = 0; i < Q_IT; i++) {
      const int c = tid + i * NT, n = n0 + c / QCH;
      const int32_t* codes = BITS == 8 ? p.bInt8 : BITS == kMxfp4Bits ? p.bFp4 : p.bInt4;
      qRow[i] = (c < Q_CHUNKS && n < p.N) ? reinterpret_cast<const uint32_t*>(codes) + (base + n) * kWords : nullptr;
    }
#pragma unroll
    for (int i = 0; i < S_IT; i++) {
      const int c = tid + i * NT, n = n0 + c / QSL;
      const bool ok = c < S_ENTRIES && n < p.N;
      sRow[i] = ok ? p.bScales + (base + n) * groups : nullptr;
      zRow[i] = ok && p.bZeros ? p.bZeros + (base + n) * groups : nullptr;
    }
  }

  const bool streamOnce = VEC && p.bStreamOnce;
  const uint64_t policy = streamOnce ? evictFirstPolicy() : 0;
  auto loadA = [&](int stage, int kt) {
    const int k0 = kt * BK;
    Elem* as = As + stage * BM * LDS;
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
  };
  auto loadB = [&](int stage, int kt) {
    const int k0 = kt * BK;
    Elem* bs = Bs + stage * BN * LDS;
    if constexpr (Q) {
      uint32_t* qs = Bq + stage * QSTAGE;
#pragma unroll
      for (int i = 0; i < Q_IT; i++) {
        const int c = tid + i * NT;
        if (Q_CHUNKS % NT != 0 && c >= Q_CHUNKS) break;
        const int part = c % QCH, k = k0 + part * QCODES;  // K % 32 == 0: a chunk is wholly in or out
        const bool ok = qRow[i] != nullptr && k < p.K;
        const void* src = ok ? static_cast<const void*>(qRow[i] + k / QPW) : static_cast<const void*>(BITS == 8 ? p.bInt8 : BITS == kMxfp4Bits ? p.bFp4 : p.bInt4);
        uint32_t* dst = qs + (c / QCH) * QROW + part * 4;
        if (streamOnce) cpAsync16Policy(dst, src, ok, policy);
        else if (p.codePrefetchBytes == 256) cpAsync16Prefetch<256>(dst, src, ok);
        else if (p.codePrefetchBytes == 128) cpAsync16Prefetch<128>(dst, src, ok);
        else cpAsync16(dst, src, ok);
      }
      if (scaleVec) {
#pragma unroll
        for (int i = 0; i < SV_IT; i++) {
          const int c = tid + i * NT;
          if (SV_CHUNKS % NT != 0 && c >= SV_CHUNKS) break;
          const int r = c / (QSL / SV), part = c % (QSL / SV);
          const long long g = svRow[i] + k0 / 32 + part * SV;
          const bool ok = svRow[i] >= 0;
          cpAsyncN<SV * 4>(qs + BN * QROW + r * QSL + part * SV, ok ? p.bScales + g : p.bScales, ok);
          if (p.bZeros) cpAsyncN<SV * 4>(qs + BN * (QROW + QSL) + r * QSL + part * SV, ok ? p.bZeros + g : p.bZeros, ok);
        }
      } else {
#pragma unroll
        for (int i = 0; i < S_IT; i++) {
          const int c = tid + i * NT;
          if (S_ENTRIES % NT != 0 && c >= S_ENTRIES) break;
          const int slot = c % QSL, k = k0 + slot * 32, g = k / p.groupSize;
          const bool ok = sRow[i] != nullptr && k < p.K;
          cpAsync4(qs + BN * QROW + c, ok ? sRow[i] + g : p.bScales, ok);
          if (p.bZeros) cpAsync4(qs + BN * (QROW + QSL) + c, ok ? zRow[i] + g : p.bZeros, ok);
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < B_IT; i++) {
        const int c = tid + i * NT;
        if (B_CHUNKS % NT != 0 && c >= B_CHUNKS) break;
        const int kc = (c % KCH) * 8, k = k0 + kc;
        Elem* dst = bs + (c / KCH) * LDS + kc;
        if (VEC) {
          const bool ok = bRow[i] != nullptr && k < p.K;
          if (streamOnce) cpAsync16Policy(dst, ok ? bRow[i] + k : B, ok, policy);
          else cpAsync16(dst, ok ? bRow[i] + k : B, ok);
        } else {
#pragma unroll
          for (int e = 0; e < 8; e++) dst[e] = (bRow[i] != nullptr && k + e < p.K) ? bRow[i][k + e] : zero;
        }
      }
    }
  };

  auto loadStage = [&](int stage, int kt) {
    loadA(stage, kt);
    loadB(stage, kt);
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

  // int4: the scale and bias (128 + zero, or 1024 + zero) pairs of the current 32-value slot, per n8 block
  constexpr float kMagicValue = std::is_same<Elem, __nv_bfloat16>::value ? 128.f : 1024.f;
  const uint32_t kBias8 = Q ? pairOf2<Elem>(kMagicValue + 8.f) : 0u;
  uint32_t scalePair[Q ? NI : 1], biasPair[Q ? NI : 1];
  // int8: the group scale of the current slot and the slot's two code words (steps 2j, 2j+1), per n8 block
  float scale8[BITS == 8 || BITS == kMxfp4Bits ? NI : 1];
  uint2 code8[BITS == 8 ? NI : 1];
  const int KT = (p.K + BK - 1) / BK;
  // The last tile of a segment is often short (at T=4096 about half the experts end in a tile of a few rows):
  // warps whose rows all lie past the segment's end skip the math (they still load and synchronize).
  const bool warpHasRows = tile.rowStart + wm * WM < tile.rowEnd;
  if (early) {
    // The prologue's weight loads join the first stage's group: cpAsyncWait<STAGES - 2> at k step 0 covers them.
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
      if (s < KT) loadB(s, s);
    }
    awaitPredecessor();
    gatherRows<A_IT, NT, KCH, A_CHUNKS>(p, tile, A, tid, aRow);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
      if (s < KT) loadA(s, s);
      cpAsyncCommit();
    }
  } else {
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
      if (s < KT) loadStage(s, s);
      cpAsyncCommit();
    }
  }
  for (int kt = 0; kt < KT; kt++) {
    cpAsyncWait<STAGES - 2>();
    __syncthreads();  // stage kt landed for everyone, and stage kt-1 is no longer being read
    const int pf = kt + STAGES - 1;
    if (pf < KT) loadStage(pf % STAGES, pf);
    cpAsyncCommit();
    if constexpr (BITS == 4 || BITS == kMxfp4Bits) {
      permuteAStage<LDS, KCH, NT>(As + (kt % STAGES) * BM * LDS, min(BM, tile.rowEnd - tile.rowStart), tid);
      __syncthreads();
    }
    if (!warpHasRows) continue;

    const Elem* as = As + (kt % STAGES) * BM * LDS + (wm * WM) * LDS;
    const Elem* bs = Bs + (kt % STAGES) * BN * LDS + (wn * WN) * LDS;
    // The A and B fragments of K step ks (16 values) of this stage: ldmatrix, or the code words dequantized.
    auto loadFrags = [&](int ks, uint32_t (&af)[MI][4], uint32_t (&bf)[NI][2]) {
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        ldmatrixX4(af[mi], as + (mi * 16 + (lane % 16)) * LDS + ks * 16 + (lane / 16) * 8);
      }
      if constexpr (QPREV) {
        const uint32_t* qs = Bq + (kt % STAGES) * QSTAGE;
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          const int n = wn * WN + ni * 8 + lane / 4;
          const uint2 w = *reinterpret_cast<const uint2*>(qs + n * QROW + ks * 2);
          const int e = n * QSL + (ks * 16) / 32;
          const float* sc = reinterpret_cast<const float*>(qs + BN * QROW);
          const uint32_t scale = pairOf<Elem>(sc[e]);
          const uint32_t bias = pairOf<Elem>(128.f + (p.bZeros ? sc[BN * QSL + e] : 8.f));
          const int shift = 8 * (lane % 4);
          bf[ni][0] = dequant2<Elem>(w.x >> shift, bias, scale);
          bf[ni][1] = dequant2<Elem>(w.y >> shift, bias, scale);
        }
      } else if constexpr (BITS == 8) {
        // Column g of each n8 block: word 2t (even step) or 2t+1 (odd step) of the 32-value slot, read as a pair
        // with the slot's scale every other step.
        const uint32_t* qs = Bq + (kt % STAGES) * QSTAGE;
        if (ks % 2 == 0) {
          const float* sc = reinterpret_cast<const float*>(qs + BN * QROW);
#pragma unroll
          for (int ni = 0; ni < NI; ni++) {
            const int n = wn * WN + ni * 8 + lane / 4;
            scale8[ni] = sc[n * QSL + ks / 2];
            code8[ni] = *reinterpret_cast<const uint2*>(qs + n * QROW + (ks / 2) * 8 + 2 * (lane % 4));
          }
        }
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          dequantInt8<Elem>(ks % 2 == 0 ? code8[ni].x : code8[ni].y, scale8[ni], bf[ni][0], bf[ni][1]);
        }
      } else if constexpr (BITS == kMxfp4Bits) {
        // Column g of each n8 block: the step's two code words, nibbles t and t+4 of each; the block scale once per
        // 32-value slot.
        const uint32_t* qs = Bq + (kt % STAGES) * QSTAGE;
        if (ks % 2 == 0) {
          const float* sc = reinterpret_cast<const float*>(qs + BN * QROW);
#pragma unroll
          for (int ni = 0; ni < NI; ni++) scale8[ni] = sc[(wn * WN + ni * 8 + lane / 4) * QSL + ks / 2];
        }
        const int shift = 4 * (lane % 4);
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          const int n = wn * WN + ni * 8 + lane / 4;
          const uint2 w = *reinterpret_cast<const uint2*>(qs + n * QROW + ks * 2);
          bf[ni][0] = dequantFp4<Elem>(w.x, shift, scale8[ni]);
          bf[ni][1] = dequantFp4<Elem>(w.y, shift, scale8[ni]);
        }
      } else if constexpr (Q) {
        // Column g of each n8 block: the step's two code words (K 0-7, 8-15 of the step), nibbles t and t+4 of
        // each (dequantPair); the scale (and zero) pairs once per 32-value slot, i.e. every other step.
        const uint32_t* qs = Bq + (kt % STAGES) * QSTAGE;
        const float* sc = reinterpret_cast<const float*>(qs + BN * QROW);
        if (ks % 2 == 0) {
#pragma unroll
          for (int ni = 0; ni < NI; ni++) {
            const int e = (wn * WN + ni * 8 + lane / 4) * QSL + ks / 2;
            scalePair[ni] = pairOf2<Elem>(sc[e]);
            biasPair[ni] = p.bZeros ? pairOf2<Elem>(kMagicValue + sc[BN * QSL + e]) : kBias8;
          }
        }
        const int shift = 4 * (lane % 4);
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          const int n = wn * WN + ni * 8 + lane / 4;
          const uint2 w = *reinterpret_cast<const uint2*>(qs + n * QROW + ks * 2);
          bf[ni][0] = dequantPair<Elem>(w.x, shift, biasPair[ni], scalePair[ni]);
          bf[ni][1] = dequantPair<Elem>(w.y, shift, biasPair[ni], scalePair[ni]);
        }
      } else {
#pragma unroll
        for (int nj = 0; nj < NI / 2; nj++) {
          uint32_t r[4];
          ldmatrixX4(r, bs + (nj * 16 + (lane / 16) * 8 + (lane % 8)) * LDS + ks * 16 + ((lane / 8) % 2) * 8);
          bf[2 * nj][0] = r[0];
          bf[2 * nj][1] = r[1];
          bf[2 * nj + 1][0] = r[2];
          bf[2 * nj + 1][1] = r[3];
        }
      }
    };
    // FRAG_BUFS 2: step ks+1's fragments are loaded (and dequantized) before step ks's mma, so the shared-memory
    // load latency of the next step overlaps this step's math (the loads and the mma are volatile asm: the compiler
    // keeps their program order, so without this each step waits on its own loads).
    uint32_t af[FRAG_BUFS][MI][4];
    uint32_t bf[FRAG_BUFS][NI][2];
    if constexpr (FRAG_BUFS == 2) loadFrags(0, af[0], bf[0]);
#pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) {
      constexpr int kLast = BK / 16 - 1;
      const int cur = FRAG_BUFS == 2 ? ks % 2 : 0;
      if constexpr (FRAG_BUFS == 2) {
        if (ks < kLast) loadFrags(ks + 1, af[(ks + 1) % 2], bf[(ks + 1) % 2]);
      } else {
        loadFrags(ks, af[0], bf[0]);
      }
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++) Mma<Elem>::run(acc[mi][ni], af[cur][mi], bf[cur][ni]);
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
      } else if (EPI == Epilogue::kStore && p.combineAdd != nullptr) {
        // GemmProblem.combineAdd (the decode down GEMM, MoeLayer::enqueue): the row's weighted
        // term goes straight into its token's output row, zeroed by the permute, with float32 atomic adds.
        const int q = p.rowToPair[r];
        if (q < 0) continue;
        float* dst = p.combineAdd + static_cast<long long>(q / p.topK) * p.ldc;
        const float w = p.pairWeight[q], s = p.weightsApplied ? 1.f : w;
        // float2 atomics exist from sm_90 on; the other devices add the two columns one by one.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        const bool pairedAdd = p.ldc % 2 == 0 && (reinterpret_cast<uintptr_t>(p.combineAdd) % 8) == 0;
#else
        constexpr bool pairedAdd = false;
#endif
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
          const int col = n0 + wn * WN + ni * 8 + 2 * t4;
          const float v0 = s * acc[mi][ni][half * 2] + (bias && col < p.N ? w * bias[col] : 0.f);
          const float v1 = s * acc[mi][ni][half * 2 + 1] + (bias && col + 1 < p.N ? w * bias[col + 1] : 0.f);
          if (pairedAdd && col + 1 < p.N) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float2*>(dst + col), make_float2(v0, v1));
#endif
          } else {
            if (col < p.N) atomicAdd(dst + col, v0);
            if (col + 1 < p.N) atomicAdd(dst + col + 1, v1);
          }
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
  if (EPI == Epilogue::kStore && p.combineOut != nullptr) combineTail<BN>(p, n0, smemRaw);
}

}  // namespace gemm
}  // namespace moe
