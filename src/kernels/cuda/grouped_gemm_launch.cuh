// Picks a tile configuration for a grouped GEMM and launches it. Included by one .cu per element type so the
// instantiations compile in parallel; each .cu defines one launchGroupedGemm<Elem>.
#pragma once

#include <cstdlib>
#include <cstring>

#include "gemm_sm90.h"
#include "gemm_stream.cuh"
#include "grouped_gemm.cuh"
#include "moe_kernels.h"

namespace moe {
namespace gemm {

// Above 48 KB a kernel must opt in to dynamic shared memory. `done` is the caller's per-configuration flag
// (a static in each launch template instantiation: kernels of one signature share a function-pointer type).
// The kernel's static shared memory counts against the same 48 KB.
template <typename Kernel>
void raiseSmemLimit(Kernel kernel, int bytes, bool& done) {
  if (!done) {
    cudaFuncAttributes attr{};
    MOE_CUDA(cudaFuncGetAttributes(&attr, kernel));
    if (bytes + attr.sharedSizeBytes > 48 * 1024) {
      MOE_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    }
  }
  done = true;
}

inline dim3 gridFor(const GemmProblem& p, int bm, int bn) {
  if (ceilDiv(p.N, bn) > 65535) {
    throw std::invalid_argument("grouped GEMM: N = " + std::to_string(p.N) + " needs more than 65535 column tiles");
  }
  const int rowTiles = p.seg.offsets == nullptr ? ceilDiv(p.M, bm) : maxRowTiles(p.M, p.seg.numExperts, bm);
  return dim3(static_cast<unsigned>(rowTiles), static_cast<unsigned>(ceilDiv(p.N, bn)),
              static_cast<unsigned>(p.kSplit > 1 ? p.kSplit : 1));
}

inline int smCount() {
  static const int n = [] {
    int dev = 0, c = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 132;
    }
    return c;
  }();
  return n;
}

// On small grids (one token) a GEMM whose N is a multiple of 48 takes 16 x 48 tiles of 3 warps: the up_gate GEMM of
// a top-8 layer with 2 I = 1536 then has 8 x 32 = 256 blocks, about two per SM of 132, instead of 192 (some SMs
// stream two tiles, others one). Half-precision weights by default: H200 session 9 batch B2, Qwen3-30B-A3B bf16
// T = 1 0.0408 -> 0.0388 ms with the column-first grid (session 8's B1, rows first: 0.0414 -> 0.0437); int4 codes
// keep 16 x 64 (0.0376 -> 0.0400). TFJS_MOE_CUDA_DECODE_BN (A/B, read at each launch): '48' = both, '64' = neither.
inline bool decodeNarrowTiles(const GemmProblem& p, bool int4Codes) {
  if (p.N % 48 != 0) return false;
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_BN");
  if (v != nullptr && std::strcmp(v, "48") == 0) return true;
  if (v != nullptr && std::strcmp(v, "64") == 0) return false;
  return !int4Codes;
}

// The pipeline depth of the 16 x 64 tiles on grids of two or more blocks per SM (16 tokens). int4: three 128-deep
// stages, not four (a quarter less shared memory: 7 blocks per SM instead of 5, more warps to issue the dequantize
// from; H200 batch B1, T = 16: 0.1771 -> 0.1625 ms). bf16 keeps four 64-deep ones (three: 0.2438 -> 0.2508).
// TFJS_MOE_CUDA_DECODE_STAGES (A/B, read at each launch): '3' / '4' force three / four stages for both.
inline bool decodeThreeStages(bool int4) {
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_STAGES");
  if (v != nullptr && std::strcmp(v, "3") == 0) return true;
  if (v != nullptr && std::strcmp(v, "4") == 0) return false;
  return int4;
}
// TFJS_MOE_CUDA_DECODE_DOWN=k128 (A/B, read at each launch, bf16 / f16 weights): on grids of two or more blocks per
// SM, a GEMM of K <= 1024 (the down GEMM: K = I) takes four 128-deep stages instead of 64-deep ones (half the K
// steps of a short K, so less of each block's time in its pipeline's ramp and drain).
inline bool decodeShortKDeep(const GemmProblem& p) {
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_DOWN");
  return v != nullptr && std::strcmp(v, "k128") == 0 && p.K <= 1024;
}
// TFJS_MOE_CUDA_DECODE_STAGES=k256x2 (A/B, bf16 / f16 weights): those tiles with two 256-deep stages (one in flight
// while the other is read: 512 contiguous bytes of each weight row per load; 2 blocks per SM; B1, T = 16: 0.2584).
inline bool decodeDeepTwoStages() {
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_STAGES");
  return v != nullptr && std::strcmp(v, "k256x2") == 0;
}

// Decode tiles: a grid of fewer than about two blocks per SM (one token of a top-8 layer: 8 experts x 24 column
// tiles) leaves each block alone on its SM, so each must keep more weight bytes in flight: the deeper-K variant.
inline bool fewDecodeBlocks(const GemmProblem& p, int bn) {
  const long long experts = p.seg.offsets != nullptr ? std::min<long long>(p.seg.numExperts, p.M) : 1;
  return experts * ceilDiv(p.N, bn) < 2LL * smCount();
}

// The 16-row tiles' grid walks the column tiles first (GemmProblem.colTilesFirst) on small grids (one token): H200
// batch B1 (session 8), Qwen3-30B-A3B layer, T = 1: bf16 0.0414 -> 0.0408 ms, int4 0.0377 -> 0.0374; at T = 16 it
// was slower (0.2438 -> 0.2528, 0.1771 -> 0.1785), so larger grids keep the row tiles first.
// TFJS_MOE_CUDA_DECODE_GRID (A/B, read at each launch): 'cols' / 'rows' force one order on every grid.
inline bool decodeColTilesFirst(const GemmProblem& p, int bn) {
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_GRID");
  if (v != nullptr && std::strcmp(v, "cols") == 0) return true;
  if (v != nullptr && std::strcmp(v, "rows") == 0) return false;
  return fewDecodeBlocks(p, bn);
}

// TFJS_MOE_CUDA_FRAG_BUFS=1 (A/B, read at each launch): the 16 x 64 decode tiles with one register set of mma
// fragments, as before session 8; unset or '2': two (the next K step's fragments loaded during this step's mma).
inline int decodeFragBuffers() {
  const char* v = std::getenv("TFJS_MOE_CUDA_FRAG_BUFS");
  return v != nullptr && std::strcmp(v, "1") == 0 ? 1 : 2;
}

template <typename Elem, typename OutT, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, Epilogue EPI,
          bool VEC, int BITS, int FRAG_BUFS>
void launchMmaKernel(const GemmProblem& p, cudaStream_t stream) {
  using Cfg = MmaConfig<Elem, BM, BN, BK, WARPS_M, WARPS_N, STAGES, BITS>;
  auto kernel = mmaGemmKernel<Elem, OutT, BM, BN, BK, WARPS_M, WARPS_N, STAGES, EPI, VEC, BITS, FRAG_BUFS>;
  static bool smemRaised = false;
  raiseSmemLimit(kernel, Cfg::kSmemBytes, smemRaised);
  dim3 grid = gridFor(p, BM, BN);
  if (grid.x == 0 || grid.y == 0) return;
  const int smem = BITS == 4 && p.int4ScaleVectors && p.bZeros == nullptr ? Cfg::kSmemBytesNoZeros : Cfg::kSmemBytes;
  if (BM == 16 && VEC && p.seg.offsets != nullptr && grid.z == 1 && grid.x <= 65535 &&
      decodeColTilesFirst(p, BN)) {
    GemmProblem q = p;
    q.colTilesFirst = true;
    launchKernel("mmaGemmKernel", kernel, dim3(grid.y, grid.x, 1), Cfg::kThreads, smem, stream, q);
    return;
  }
  launchKernel("mmaGemmKernel", kernel, grid, Cfg::kThreads, smem, stream, p);
}

// The default 16 x 64 decode tiles of every format (4 warps, 4 stages; 3 / 2 under the DECODE_STAGES switches; 16 x 48
// of 3 warps under DECODE_BN) double-buffer their fragments (decodeFragBuffers); the other shapes, the A/B variants among them, keep one set.
template <typename Elem, typename OutT, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, Epilogue EPI,
          bool VEC, int BITS = 16>
void launchMmaConfig(const GemmProblem& p, cudaStream_t stream) {
  constexpr bool kDecodeTile = VEC && BM == 16 && WARPS_M == 1 && ((BN == 64 && WARPS_N == 4) || (BN == 48 && WARPS_N == 3)) &&
                                STAGES >= 2 && STAGES <= 4;
  if constexpr (kDecodeTile) {
    if (decodeFragBuffers() == 2) {
      launchMmaKernel<Elem, OutT, BM, BN, BK, WARPS_M, WARPS_N, STAGES, EPI, VEC, BITS, 2>(p, stream);
      return;
    }
  }
  launchMmaKernel<Elem, OutT, BM, BN, BK, WARPS_M, WARPS_N, STAGES, EPI, VEC, BITS, 1>(p, stream);
}

// The tfjs flag MOE_CUDA_GEMM_TILES = 'previous' restores the tile choice from before the 128x256 prefill tiles,
// for A/B timing.
inline bool previousTiles() { return tuning().previousTiles; }

// The tensor-core tile shapes the launcher instantiates (BM x BN, BK, warps, stages are fixed per shape below).
enum class MmaTile { k16x64, k32x128, k64x128, k128x256, k128x128 };

// Tile choice as data: the first row whose bounds admit the call wins. Tile height follows the expected rows per
// expert: 16-row tiles stream each active expert's weights once (decode), 128-row tiles reuse them across many
// rows (prefill). Measured on the H100 (BENCHMARKS.md); 32-column 6-stage tiles for the few-rows case gave
// nothing at T=1 there, so they are not in the table. `prefill` marks the 128x256 row that
// MOE_CUDA_GEMM_TILES = 'previous' skips (A/B timing against the choice from before it).
struct MmaTileChoice {
  int maxRowsPerSegment;
  int minN;
  bool prefill;
  MmaTile tile;
};
constexpr int kAnyRows = 1 << 30;
constexpr MmaTileChoice kMmaTileTable[] = {
    {16, 0, false, MmaTile::k16x64},
    {40, 0, false, MmaTile::k32x128},
    {96, 0, false, MmaTile::k64x128},
    // 64x64 warp tiles (8 warps over 128x256) load half as many fragments per mma as 64x32 ones, and every
    // weight tile is reused over 128 rows from shared memory; one block per SM, three 64-deep stages.
    {kAnyRows, 1024, true, MmaTile::k128x256},
    {kAnyRows, 0, false, MmaTile::k128x128},
};

inline MmaTile chooseMmaTile(int rowsPerSegment, int n) {
  const bool previous = previousTiles();
  for (const MmaTileChoice& c : kMmaTileTable) {
    if (rowsPerSegment <= c.maxRowsPerSegment && n >= c.minN && !(previous && c.prefill)) return c.tile;
  }
  return MmaTile::k128x128;
}

template <typename Elem, typename OutT, Epilogue EPI>
void launchMmaEpi(const GemmProblem& p, bool vec, cudaStream_t stream) {
  if (!vec) {
    launchMmaConfig<Elem, OutT, 16, 64, 32, 1, 4, 3, EPI, false>(p, stream);
    return;
  }
  switch (chooseMmaTile(p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M, p.N)) {
    case MmaTile::k16x64:
      // Decode: each block streams its expert's 64 weight rows once; the pipeline depth sets the bytes in flight.
      switch (tuning().decodeGemm) {
        case DecodeGemm::kMma32: launchMmaConfig<Elem, OutT, 16, 32, 64, 1, 2, 4, EPI, true>(p, stream); break;
        case DecodeGemm::kMmaDeep: launchMmaConfig<Elem, OutT, 16, 64, 64, 1, 4, 8, EPI, true>(p, stream); break;
        case DecodeGemm::kMmaK128: launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true>(p, stream); break;
        case DecodeGemm::kMmaShallow: launchMmaConfig<Elem, OutT, 16, 64, 64, 1, 4, 4, EPI, true>(p, stream); break;
        default:
          if (fewDecodeBlocks(p, 64) && decodeNarrowTiles(p, false)) launchMmaConfig<Elem, OutT, 16, 48, 128, 1, 3, 4, EPI, true>(p, stream);
          else if (fewDecodeBlocks(p, 64)) launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true>(p, stream);
          else if (decodeThreeStages(false)) launchMmaConfig<Elem, OutT, 16, 64, 64, 1, 4, 3, EPI, true>(p, stream);
          else if (decodeDeepTwoStages()) launchMmaConfig<Elem, OutT, 16, 64, 256, 1, 4, 2, EPI, true>(p, stream);
          else if (decodeShortKDeep(p)) launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true>(p, stream);
          else launchMmaConfig<Elem, OutT, 16, 64, 64, 1, 4, 4, EPI, true>(p, stream);
          break;
      }
      break;
    case MmaTile::k32x128:
      launchMmaConfig<Elem, OutT, 32, 128, 64, 1, 4, 4, EPI, true>(p, stream);
      break;
    case MmaTile::k64x128:
      launchMmaConfig<Elem, OutT, 64, 128, 32, 2, 4, 4, EPI, true>(p, stream);
      break;
    case MmaTile::k128x256:
      launchMmaConfig<Elem, OutT, 128, 256, 64, 2, 4, 3, EPI, true>(p, stream);
      break;
    case MmaTile::k128x128:
      launchMmaConfig<Elem, OutT, 128, 128, 32, 2, 4, 4, EPI, true>(p, stream);
      break;
  }
}

// MOE_CUDA_GEMM_TILES 'stream' / 'stream8': the weight-streaming decode kernels.
inline bool streamingDecode() {
  return tuning().decodeGemm == DecodeGemm::kStream4 || tuning().decodeGemm == DecodeGemm::kStream8;
}

// W4A16 on tensor cores: the int4 copy of B dequantized in registers, up to the 64 x 128 tiles (more rows per
// expert are compute-bound: the dequantized copy feeds the prefill tiles). Swiglu and store epilogues only.
constexpr int kInt4MmaMaxRowsPerSegment = 96;

// GemmProblem.codePrefetchBytes of the packed-code tiles: TFJS_MOE_CUDA_CODE_PREFETCH '0' / '128' / '256' (A/B, read
// at each launch), unset: defaultBytes.
inline int codePrefetchFromEnv(int defaultBytes) {
  const char* v = std::getenv("TFJS_MOE_CUDA_CODE_PREFETCH");
  if (v == nullptr) return defaultBytes;
  return std::strcmp(v, "256") == 0 ? 256 : std::strcmp(v, "128") == 0 ? 128 : 0;
}
// The int4 tiles above the 16-row decode tiles read 16-64 bytes of each code row per stage: L2 fetches 256 around
// them, the bytes the next stages read (batch A: 0.3030 / 0.3038 -> 0.3010 / 0.3021 ms with the 128-deep 32 x 128
// tiles; no change with the 64-deep ones, 0.3114 / 0.3115).
inline int int4CodePrefetchBytes(int rowsPerSegment, int n) {
  return chooseMmaTile(rowsPerSegment, n) == MmaTile::k16x64 ? 0 : 256;
}
// TFJS_MOE_CUDA_INT4_TILES=k64 (A/B timing, read at each launch, bf16): the 32 x 128 int4 tiles of before session 7
// (four 64-deep stages).
inline bool int4TilesK64() {
  const char* v = std::getenv("TFJS_MOE_CUDA_INT4_TILES");
  return v != nullptr && std::strcmp(v, "k64") == 0;
}

template <typename Elem, typename OutT, Epilogue EPI>
void launchMmaInt4Epi(const GemmProblem& p, cudaStream_t stream) {
  switch (chooseMmaTile(p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M, p.N)) {
    case MmaTile::k16x64:
      if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
        if (tuning().decodeGemm == DecodeGemm::kInt4Previous) {  // A/B: the previous fragment decode
          if (fewDecodeBlocks(p, 64)) launchMmaConfig<Elem, OutT, 16, 64, 256, 1, 4, 4, EPI, true, 5>(p, stream);
          else launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true, 5>(p, stream);
          break;
        }
      }
      // A stage of int4 codes is a quarter of the bf16 bytes: deeper K steps keep as many bytes in flight, the
      // deepest where the grid is small (H200 batch E, one token: 0.0493 vs 0.0657 ms; 16 tokens: 0.286 vs 0.254).
      if (tuning().decodeGemm == DecodeGemm::kInt4Wide) {
        launchMmaConfig<Elem, OutT, 16, 128, 128, 1, 8, 4, EPI, true, 4>(p, stream);
      } else if (autoDecodeDepth() && fewDecodeBlocks(p, 64) && decodeNarrowTiles(p, true)) {
        launchMmaConfig<Elem, OutT, 16, 48, 256, 1, 3, 4, EPI, true, 4>(p, stream);
      } else if (tuning().decodeGemm == DecodeGemm::kMmaDeep || (autoDecodeDepth() && fewDecodeBlocks(p, 64))) {
        launchMmaConfig<Elem, OutT, 16, 64, 256, 1, 4, 4, EPI, true, 4>(p, stream);
      } else if (decodeThreeStages(true)) {
        launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 3, EPI, true, 4>(p, stream);
      } else {
        launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true, 4>(p, stream);
      }
      break;
    case MmaTile::k32x128:
      // 128-deep stages (three): a stage reads 64 bytes of each code row, not 32, and the 32 rows share each decoded
      // fragment over twice the K per barrier. H200 batch A (session 7, cudapre), Qwen3-30B-A3B int4 g32 T = 256
      // (hint 32): layer 0.3114 / 0.3127 -> 0.3030 / 0.3038 ms (up_gate 0.1808 -> 0.1713), 0.3010 / 0.3021 with the
      // 256-byte code prefetch; 8 warps (1 x 8) 0.352, six 64-deep stages 0.378, 32 x 256 0.324, the 16 x 64 tiles
      // 0.366, the W4A16 wgmma GEMM 0.457.
      if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
        if (int4TilesK64()) {
          launchMmaConfig<Elem, OutT, 32, 128, 64, 1, 4, 4, EPI, true, 4>(p, stream);
          break;
        }
      }
      launchMmaConfig<Elem, OutT, 32, 128, 128, 1, 4, 3, EPI, true, 4>(p, stream);
      break;
    default:
      launchMmaConfig<Elem, OutT, 64, 128, 32, 2, 4, 4, EPI, true, 4>(p, stream);
      break;
  }
}

// TFJS_MOE_CUDA_FORMATS=mma96deep (A/B, bf16): the int8 / mxfp4 codes up to 96 rows per expert, with three 128-deep
// stages in the 32 x 128 tiles (the int4 tiles' shape since session 7).
inline bool packedDeepTiles() {
  const char* v = std::getenv("TFJS_MOE_CUDA_FORMATS");
  return v != nullptr && std::strcmp(v, "mma96deep") == 0;
}

// W8A16 on tensor cores: the int8 copy of B dequantized in registers, the int4 rows of the tile table. The 16 x 64
// tiles take 128-deep stages (H200 batch O, T = 16: 0.2102 / 0.2009 ms per column / g32 vs 0.2169 / 0.2364 with
// 64-deep ones; MOE_CUDA_GEMM_TILES 'shallow' keeps those, A/B).
template <typename Elem, typename OutT, Epilogue EPI>
void launchMmaInt8Epi(const GemmProblem& p, cudaStream_t stream) {
  switch (chooseMmaTile(p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M, p.N)) {
    case MmaTile::k16x64:
      if (tuning().decodeGemm == DecodeGemm::kMmaShallow) {
        launchMmaConfig<Elem, OutT, 16, 64, 64, 1, 4, 4, EPI, true, 8>(p, stream);
      } else {
        launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true, 8>(p, stream);
      }
      break;
    case MmaTile::k32x128:
      if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
        if (packedDeepTiles()) {
          launchMmaConfig<Elem, OutT, 32, 128, 128, 1, 4, 3, EPI, true, 8>(p, stream);
          break;
        }
      }
      launchMmaConfig<Elem, OutT, 32, 128, 64, 1, 4, 4, EPI, true, 8>(p, stream);
      break;
    default:
      launchMmaConfig<Elem, OutT, 64, 128, 64, 2, 4, 3, EPI, true, 8>(p, stream);
      break;
  }
}

// mxfp4 experts on tensor cores: int4's code layout and tile rows (E2M1 decode, no zero slots).
template <typename Elem, typename OutT, Epilogue EPI>
void launchMmaFp4Epi(const GemmProblem& p, cudaStream_t stream) {
  constexpr int B = kMxfp4Bits;
  switch (chooseMmaTile(p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M, p.N)) {
    case MmaTile::k16x64:
      if (tuning().decodeGemm == DecodeGemm::kMmaDeep || (autoDecodeDepth() && fewDecodeBlocks(p, 64))) {
        launchMmaConfig<Elem, OutT, 16, 64, 256, 1, 4, 4, EPI, true, B>(p, stream);
      } else {
        launchMmaConfig<Elem, OutT, 16, 64, 128, 1, 4, 4, EPI, true, B>(p, stream);
      }
      break;
    case MmaTile::k32x128:
      if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
        if (packedDeepTiles()) {
          launchMmaConfig<Elem, OutT, 32, 128, 128, 1, 4, 3, EPI, true, B>(p, stream);
          break;
        }
      }
      launchMmaConfig<Elem, OutT, 32, 128, 64, 1, 4, 4, EPI, true, B>(p, stream);
      break;
    default:
      launchMmaConfig<Elem, OutT, 64, 128, 32, 2, 4, 4, EPI, true, B>(p, stream);
      break;
  }
}

inline bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

// With MOE_CUDA_GEMM_TILES 'stream' / 'stream8', up to this many expected rows per expert the half-precision GEMMs
// stream weights on CUDA cores (gemm_stream.cuh) instead of 16-row tensor-core tiles: T <= 16 of a 128-expert
// top-8 layer.
constexpr int kStreamMaxRowsPerSegment = 2;

template <typename Elem, typename OutT, int COLS, Epilogue EPI, int BITS>
void launchStreamConfig(const GemmProblem& p, cudaStream_t stream) {
  using Cfg = StreamConfig<Elem, COLS>;
  const dim3 grid = gridFor(p, kStreamTileRows, Cfg::kBN);
  if (grid.x == 0 || grid.y == 0) return;
  launchKernel("streamGemmKernel", streamGemmKernel<Elem, OutT, COLS, EPI, BITS>, grid, Cfg::kThreads,
               Cfg::smemBytes(p.K), stream, p);
}

// Whether the streaming kernel reads the int4 copy of B (K and the group in whole 32-code chunks).
inline bool streamsInt4(const GemmProblem& p) {
  return p.bInt4 != nullptr && p.bScales != nullptr && p.K % 32 == 0 && p.groupSize > 0 && p.groupSize % 32 == 0;
}

template <typename Elem, typename OutT, Epilogue EPI>
void launchStreamEpi(const GemmProblem& p, cudaStream_t stream) {
  if (streamsInt4(p)) launchStreamConfig<Elem, OutT, 4, EPI, 4>(p, stream);
  else if (tuning().decodeGemm == DecodeGemm::kStream8) launchStreamConfig<Elem, OutT, 8, EPI, 16>(p, stream);
  else launchStreamConfig<Elem, OutT, 4, EPI, 16>(p, stream);
}

// Whether a call takes the streaming kernel: decode-sized segments, the VEC layout, its shared memory within the
// default 48 KB, whole gate/up groups for SwiGLU.
template <typename Elem>
bool useStreamGemm(const GemmProblem& p, bool vec) {
  if (!streamingDecode() || previousTiles() || !vec || p.kSplit > 1) return false;
  const int hint = p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M;
  if (hint > kStreamMaxRowsPerSegment) return false;
  if (StreamConfig<Elem, 8>::smemBytes(p.K) > 48 * 1024) return false;
  return p.epilogue != Epilogue::kSwiglu || p.N % 16 == 0;
}

template <typename Elem>
bool combineSupported(const GemmProblem& p) {
  const bool vec = p.K % 8 == 0 && p.lda % 8 == 0 && aligned16(p.A) && aligned16(p.B);
  return vec && streamingDecode() && !previousTiles() && p.topK >= 1 &&
         streamCombineSmemBytes<Elem>(p.K, p.topK) <= 48 * 1024;
}

template <typename Elem>
void launchStreamCombine(const GemmProblem& p, cudaStream_t stream) {
  if (!combineSupported<Elem>(p)) throw std::invalid_argument("grouped GEMM: kCombine is not supported for this problem");
  constexpr int COLS = 4, BN = kStreamWarps * COLS;
  if (p.M == 0 || p.N == 0) return;
  const dim3 grid(p.M, ceilDiv(p.N, BN));
  const size_t smem = streamCombineSmemBytes<Elem>(p.K, p.topK);
  if (streamsInt4(p)) launchKernel("streamCombineKernel", streamCombineKernel<Elem, COLS, 4>, grid, kStreamWarps * 32, smem, stream, p);
  else launchKernel("streamCombineKernel", streamCombineKernel<Elem, COLS, 16>, grid, kStreamWarps * 32, smem, stream, p);
}

// GemmProblem.combineOut on a kernel without the combine tail: the GEMM, then the combine kernel (the same sums).
inline void combineAfter(const GemmProblem& p, cudaStream_t stream) {
  launchCombine(static_cast<const float*>(p.C), p.M, p.ldc, p.pairRow, p.pairWeight, p.pairExpert, p.combineTokens,
                p.topK, p.seg.numExperts, p.combineBias, p.weightsApplied, p.identityX, p.combineOut, stream);
}

// GemmProblem.int4ScaleVectors where the scale (zero) arrays allow it; TFJS_MOE_CUDA_INT4_SCALE_LOADS=each keeps the
// session-4 tiles (4-byte scale loads, zero slots in every stage; A/B switch, read at each launch).
inline bool int4ScaleVectors(const GemmProblem& p) {
  const char* v = std::getenv("TFJS_MOE_CUDA_INT4_SCALE_LOADS");
  if (v != nullptr && std::strcmp(v, "each") == 0) return false;
  return p.groupSize == 32 && aligned16(p.bScales) && (p.bZeros == nullptr || aligned16(p.bZeros));
}

// Where the int8 / mxfp4 codes feed the tensor-core tiles: up to maxRows expected rows per expert, and on grids of
// fewer than two blocks per SM (fewDecodeBlocks: one token) only if smallGrids; elsewhere the dequantized copy's bf16
// GEMMs were faster. H200 batches N and O, Qwen3-30B-A3B layer, codes vs copy (ms): int8 T = 1 0.0409 / 0.0412 (g32
// 0.0391 / 0.0414), T = 16 0.2169 / 0.2492, T = 256 (16 rows) 0.3664 / 0.3637 (g32 0.4056 / 0.3637); mxfp4 T = 1
// 0.0438 / 0.0412, T = 16 0.2264 / 0.2491, T = 256 0.4076 / 0.3624.
struct PackedMmaLimits {
  int maxRows;
  bool smallGrids;
};
constexpr PackedMmaLimits kInt8MmaLimits{8, true}, kMxfp4MmaLimits{8, false};

// TFJS_MOE_CUDA_FORMATS (A/B, read at each launch; 'copy' is read by the layer): 'mma96' / 'mma8' take the codes up
// to 96 / 8 rows per expert on every grid, for both formats; 'mma96deep' as 'mma96' with 128-deep 32 x 128 tiles.
inline bool packedMmaApplies(const GemmProblem& p, bool int8, int hint) {
  const char* v = std::getenv("TFJS_MOE_CUDA_FORMATS");
  PackedMmaLimits l = int8 ? kInt8MmaLimits : kMxfp4MmaLimits;
  if (v != nullptr && (std::strcmp(v, "mma96") == 0 || std::strcmp(v, "mma96deep") == 0)) l = {kInt4MmaMaxRowsPerSegment, true};
  if (v != nullptr && std::strcmp(v, "mma8") == 0) l = {8, true};
  return hint <= l.maxRows && (l.smallGrids || !fewDecodeBlocks(p, 64));
}

template <typename Elem>
void launchMmaGemm(const GemmProblem& p, cudaStream_t stream) {
  if (p.epilogue == Epilogue::kCombine) {
    launchStreamCombine<Elem>(p, stream);
    return;
  }
  const bool vec = p.K % 8 == 0 && p.lda % 8 == 0 && aligned16(p.A) && aligned16(p.B);
  if (p.combineOut != nullptr && useStreamGemm<Elem>(p, vec)) {
    GemmProblem q = p;
    q.combineOut = nullptr;
    launchMmaGemm<Elem>(q, stream);
    combineAfter(p, stream);
    return;
  }
  const int hint = p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M;
  // sm_90: int4 experts at mid sizes on the W4A16 wgmma GEMM (gemm_sm90.h; it declines decode and prefill sizes).
  if (vec && p.bInt4 != nullptr && launchGroupedGemmSm90Int4(p, stream)) return;
  // int8 / mxfp4 experts where packedMmaApplies; elsewhere they read the dequantized copy.
  const bool int8 = p.bInt8 != nullptr && p.groupSize > 0 && p.groupSize % 32 == 0;
  const bool fp4 = p.bFp4 != nullptr && p.groupSize == 32;
  if ((int8 || fp4) && !streamingDecode() && !previousTiles() && vec && p.bInt4 == nullptr && p.bScales != nullptr &&
      p.bZeros == nullptr && p.K % 32 == 0 && p.kSplit <= 1 && packedMmaApplies(p, int8, hint)) {
    GemmProblem q = p;
    q.int4ScaleVectors = int4ScaleVectors(p);
    if (p.epilogue == Epilogue::kSwiglu && p.out != DType::kFloat32) {
      if (int8) launchMmaInt8Epi<Elem, Elem, Epilogue::kSwiglu>(q, stream);
      else launchMmaFp4Epi<Elem, Elem, Epilogue::kSwiglu>(q, stream);
      return;
    }
    if (p.epilogue == Epilogue::kStore && p.out == DType::kFloat32) {
      if (int8) launchMmaInt8Epi<Elem, float, Epilogue::kStore>(q, stream);
      else launchMmaFp4Epi<Elem, float, Epilogue::kStore>(q, stream);
      return;
    }
  }
  if (tuning().int4Mma && !streamingDecode() && !previousTiles() && vec && p.bInt4 != nullptr && p.bScales != nullptr &&
      p.K % 32 == 0 && p.groupSize > 0 && p.groupSize % 32 == 0 && hint <= kInt4MmaMaxRowsPerSegment && p.kSplit <= 1) {
    GemmProblem q = p;
    q.int4ScaleVectors = int4ScaleVectors(p);
    q.codePrefetchBytes = codePrefetchFromEnv(int4CodePrefetchBytes(hint, p.N));
    if (p.epilogue == Epilogue::kSwiglu && p.out != DType::kFloat32) {
      launchMmaInt4Epi<Elem, Elem, Epilogue::kSwiglu>(q, stream);
      return;
    }
    if (p.epilogue == Epilogue::kStore && p.out == DType::kFloat32) {
      launchMmaInt4Epi<Elem, float, Epilogue::kStore>(q, stream);
      return;
    }
  }
  if (useStreamGemm<Elem>(p, vec)) {
    if (p.combineAdd != nullptr) throw std::logic_error("grouped GEMM: the streaming kernels do not take combineAdd");
    switch (p.epilogue) {
      case Epilogue::kStore:
        if (p.out != DType::kFloat32) throw std::invalid_argument("grouped GEMM: kStore writes float32");
        launchStreamEpi<Elem, float, Epilogue::kStore>(p, stream);
        return;
      case Epilogue::kSwiglu:
        if (p.out == DType::kFloat32) launchStreamEpi<Elem, float, Epilogue::kSwiglu>(p, stream);
        else launchStreamEpi<Elem, Elem, Epilogue::kSwiglu>(p, stream);
        return;
      case Epilogue::kAccumulate:
        if (p.out != DType::kFloat32) throw std::invalid_argument("grouped GEMM: kAccumulate writes float32");
        launchStreamEpi<Elem, float, Epilogue::kAccumulate>(p, stream);
        return;
      case Epilogue::kCombine:
        break;
    }
  }
  // sm_90: the wgmma GEMM (gemm_sm90.cuh) where its tile table takes the problem.
  if (vec && launchGroupedGemmSm90(p, stream)) return;
  switch (p.epilogue) {
    case Epilogue::kStore:
      if (p.out != DType::kFloat32) throw std::invalid_argument("grouped GEMM: kStore writes float32");
      launchMmaEpi<Elem, float, Epilogue::kStore>(p, vec, stream);
      break;
    case Epilogue::kSwiglu:
      if (p.out == DType::kFloat32) launchMmaEpi<Elem, float, Epilogue::kSwiglu>(p, vec, stream);
      else launchMmaEpi<Elem, Elem, Epilogue::kSwiglu>(p, vec, stream);
      break;
    case Epilogue::kAccumulate:
      if (p.out != DType::kFloat32) throw std::invalid_argument("grouped GEMM: kAccumulate writes float32");
      launchMmaEpi<Elem, float, Epilogue::kAccumulate>(p, vec, stream);
      break;
    case Epilogue::kCombine:
      break;  // handled above
  }
}

}  // namespace gemm
}  // namespace moe
