// Grouped GEMM for sm_90a (Hopper): wgmma tensor cores fed through an mbarrier pipeline by a producer warpgroup.
//  - Persistent: one block per SM walks the tile list (expert, column tile, row tile) that the permute's tile
//    prefix defines on the device; the two row tiles of an expert that share a weight tile run side by side.
//  - The producer warpgroup loads the weight tile with TMA (one box per stage, 128-byte swizzle) and gathers
//    the activation rows with cp.async into the same swizzled layout (rows come through the permute's row index,
//    which a tensor map cannot express); each stage completes on one mbarrier (TMA bytes + 128 cp.async arrivals).
//  - Two consumer warpgroups issue wgmma on 64-row slices and release a stage once its wgmma retired; their
//    epilogue (gemm_epilogue.cuh, the same code as the mma.sync core) overlaps the producer's next loads.
// Numerics: bf16/f16 products accumulated in f32, then bias / SwiGLU x scale / store exactly as the mma.sync core.
#pragma once

#include <type_traits>

#include "gemm_epilogue.cuh"
#include "gemm_scheduler.cuh"
#include "gemm_sm90_ptx.cuh"

namespace moe {
namespace sm90 {

constexpr int kBK = 64;             // one 128-byte swizzled row of half elements per k tile
constexpr int kThreads = 3 * 128;   // producer + two consumer warpgroups
// Move registers from the producer to the consumers (setmaxnreg). Off: ptxas fits every configuration in the 168
// registers of a 384-thread block without spills, so the transfer buys nothing yet.
constexpr bool kSetMaxRegs = false;

// INT4 (W4A16): B comes as int4 codes (GemmProblem.bInt4), copied by the producer into a ring of raw stages (per
// weight row: 8 code words, up to 2 group scales and 2 zero points for the 64-deep k tile) and dequantized from there
// into the swizzled half tile the wgmma reads.
constexpr int kInt4RawRowBytes = 32 + 8 + 8;

template <int BM, int BN, int STAGES, bool INT4 = false>
struct Sm90Config {
  static constexpr int kATileBytes = BM * kBK * 2;
  static constexpr int kBTileBytes = BN * kBK * 2;
  static constexpr int kStageBytes = kATileBytes + kBTileBytes;
  static constexpr int kRawStageBytes = INT4 ? BN * kInt4RawRowBytes : 0;
  // 1024 bytes of slack: the swizzled tiles need 1024-byte alignment, dynamic shared memory guarantees 16.
  static constexpr int kSmemBytes = STAGES * (kStageBytes + kRawStageBytes) + 2 * STAGES * 8 + 1024;
  // Two consumer warpgroups: 128-row tiles split by rows, 64-row tiles by columns.
  static constexpr int kWgRows = BM == 128 ? 2 : 1;
  static constexpr int kWgCols = 2 / kWgRows;
  static constexpr int kWN = BN / kWgCols;  // wgmma N of one consumer warpgroup
  static_assert(BM == 64 || BM == 128, "BM");
  static_assert(kWN == 64 || kWN == 128 || kWN == 256, "wgmma N");
};

struct TileCoord {
  int expert, rowStart, rowEnd, n0;
};

// The segment tables a block searches: the expert row offsets [E+1] and the tile prefix of this tile height [E+1],
// in shared memory when the launch gave room for them (segmentTableBytes), else in global memory.
struct SegmentTables {
  const int* offsets;
  const int* prefix;
};

__host__ __device__ inline int segmentTableBytes(const GemmProblem& p) {
  return p.seg.offsets ? 2 * (p.seg.numExperts + 1) * static_cast<int>(sizeof(int)) : 0;
}

template <int BM>
__device__ __forceinline__ int tileCount(const GemmProblem& p, const SegmentTables& seg, int colTiles) {
  if (p.seg.offsets == nullptr) return (p.M + BM - 1) / BM * colTiles;
  return seg.prefix[p.seg.numExperts] * colTiles;
}

// Tile t of the list: experts in order; within an expert column tile major, row tile minor.
template <int BM>
__device__ __forceinline__ TileCoord tileAt(const GemmProblem& p, const SegmentTables& seg, int t, int colTiles,
                                            int BN) {
  TileCoord c{0, 0, p.M, 0};
  if (p.seg.offsets == nullptr) {
    const int rowTiles = (p.M + BM - 1) / BM;
    c.rowStart = (t % rowTiles) * BM;
    c.n0 = (t / rowTiles) * BN;
    return c;
  }
  const int E = p.seg.numExperts;
  const int* prefix = seg.prefix;
  const int q = t / colTiles;
  // The last expert whose first tile is at or before q (empty experts share their successor's prefix).
  int lo = 0, hi = E - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (prefix[mid] <= q) lo = mid; else hi = mid - 1;
  }
  const int rowTiles = prefix[lo + 1] - prefix[lo];
  const int local = t - prefix[lo] * colTiles;
  c.expert = lo;
  c.rowStart = seg.offsets[lo] + (local % rowTiles) * BM;
  c.rowEnd = min(seg.offsets[lo + 1], p.M);
  c.n0 = (local / rowTiles) * BN;
  return c;
}

// Two adjacent outputs in one store (the same roundings as two scalar stores).
__device__ __forceinline__ void storePair(float* dst, float a, float b) {
  *reinterpret_cast<float2*>(dst) = make_float2(a, b);
}
__device__ __forceinline__ void storePair(__nv_bfloat16* dst, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void storePair(__half* dst, float a, float b) {
  *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(a, b);
}

// Eight int4 codes of one word (the lowest k in the lowest bits) -> s * (c - z) in Elem, 16 bytes in k order, in
// packed half arithmetic (about 19 instructions a word: the dequantization is the producer warpgroup's bound). OR-ing
// a code pair into the mantissas of 128 (bf16) / 1024 (f16) forms 128 + c exactly; minus the pair 128 + z gives c - z
// exactly (z rounded to the half type at 128, exact for integer zero points); one multiply by the group scale in the
// half type rounds once. (The dequantized copy rounds s * (c - z) once in float32: the two differ by at most an ulp
// of the weight, as for the mma.sync W4A16 tiles.) Pairs come out as (k_i, k_i+4) and are regrouped by byte permutes.
template <typename Elem>
__device__ __forceinline__ uint4 dequantWord(uint32_t w, uint32_t biasPair, uint32_t scalePair) {
  constexpr bool kBf16 = std::is_same<Elem, __nv_bfloat16>::value;
  constexpr uint32_t kMagic = kBf16 ? 0x43004300u : 0x64006400u;
  uint32_t r[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t q = ((w >> (4 * i)) & 0x000F000Fu) | kMagic;
    if constexpr (kBf16) {
      const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&q), *reinterpret_cast<const __nv_bfloat162*>(&biasPair));
      const __nv_bfloat162 v = __hmul2(d, *reinterpret_cast<const __nv_bfloat162*>(&scalePair));
      r[i] = *reinterpret_cast<const uint32_t*>(&v);
    } else {
      const __half2 d = __hsub2(*reinterpret_cast<const __half2*>(&q), *reinterpret_cast<const __half2*>(&biasPair));
      const __half2 v = __hmul2(d, *reinterpret_cast<const __half2*>(&scalePair));
      r[i] = *reinterpret_cast<const uint32_t*>(&v);
    }
  }
  return make_uint4(__byte_perm(r[0], r[1], 0x5410), __byte_perm(r[2], r[3], 0x5410), __byte_perm(r[0], r[1], 0x7632),
                    __byte_perm(r[2], r[3], 0x7632));
}
// A float as the same value in both halves of an Elem pair.
template <typename Elem>
__device__ __forceinline__ uint32_t halfPair(float v) {
  if constexpr (std::is_same<Elem, __nv_bfloat16>::value) {
    const __nv_bfloat162 h = __float2bfloat162_rn(v);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __float2half2_rn(v);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// A_TMA: the activation rows are not gathered (no row index), so they too come as one TMA box per stage (aMap: A
// [M][K], boxes of 64 x BM; rows past the segment are loaded but never stored, rows past M read as zeros).
// INT4: B from the int4 copy (K % 64 == 0, groupSize 32 or a multiple of 64; bMap unused), activations by cp.async.
// CLUSTER 2 (clusters of two blocks along the rows): the two blocks of a cluster take the two BM-row halves of one
// 2 BM-row tile (the tile list of height 2 BM), so they need the same weight tile at every stage; each loads half
// of it by TMA multicast into both, which halves the weight traffic from L2 (the bound of the up_gate GEMM at
// 4096 tokens: 64-row tiles read each weight tile from L2 once per row tile). A stage is refilled once the
// consumers of both blocks released it (they arrive on both blocks' empty barriers).
template <typename Elem, typename OutT, Epilogue EPI, int BM, int BN, int STAGES, bool A_TMA, bool INT4 = false,
          int CLUSTER = 1>
__global__ void __launch_bounds__(kThreads, 1)
    wgmmaGemmKernel(const GemmProblem p, const __grid_constant__ CUtensorMap bMap,
                    const __grid_constant__ CUtensorMap aMap) {
#ifdef MOE_SM90A
  static_assert(!(INT4 && A_TMA), "the int4 producer gathers the activation rows itself");
  static_assert(CLUSTER == 1 || (CLUSTER == 2 && !INT4 && BM * CLUSTER <= 128), "cluster: bf16/f16, 2 x 64 rows");
  using Cfg = Sm90Config<BM, BN, STAGES, INT4>;
  constexpr int WN = Cfg::kWN;
  awaitPredecessor();
  extern __shared__ unsigned char smemRaw[];
  unsigned char* smem =
      reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smemRaw) + 1023) & ~uintptr_t(1023));
  unsigned char* raw = smem + STAGES * Cfg::kStageBytes;  // INT4: the raw code stages
  uint64_t* full = reinterpret_cast<uint64_t*>(raw + STAGES * Cfg::kRawStageBytes);
  uint64_t* empty = full + STAGES;
  auto aTile = [&](int s) { return smem + s * Cfg::kStageBytes; };
  auto bTile = [&](int s) { return smem + s * Cfg::kStageBytes + Cfg::kATileBytes; };

  // Warp-uniform as far as the compiler can tell (a shuffle from lane 0), so the wgmma sits on no divergent path
  // (which would make ptxas serialize it).
  const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0), wt = threadIdx.x % 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; s++) {
      // The producers' cp.async arrivals (gathered rows) + the TMA issuer's expect_tx arrival; INT4: the cp.async
      // arrivals + one arrival per producer thread once its dequantized rows are stored.
      barInit(&full[s], A_TMA ? 1 : INT4 ? 128 + 128 : 128 + 1);
      barInit(&empty[s], 8 * CLUSTER);  // one per consumer warp of each block of the cluster
    }
    barInitFence();
    if (!INT4) prefetchTensorMap(&bMap);
    if (A_TMA) prefetchTensorMap(&aMap);
  }
  // Every tile's lookup is a binary search over the segment tables: from shared memory it costs no L2 round trips
  // in the consumers' gap between two tiles.
  SegmentTables seg{p.seg.offsets,
                    p.seg.offsets ? p.seg.tilePrefix + tileClassOf(BM * CLUSTER) * (p.seg.numExperts + 1) : nullptr};
  uint32_t dynamicSmem;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamicSmem));
  if (p.seg.offsets && dynamicSmem >= static_cast<uint32_t>(Cfg::kSmemBytes + segmentTableBytes(p))) {
    int* tables = reinterpret_cast<int*>(empty + STAGES);
    const int n = p.seg.numExperts + 1;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      tables[i] = seg.offsets[i];
      tables[n + i] = seg.prefix[i];
    }
    seg = SegmentTables{tables, tables + n};
  }
  __syncthreads();
  // This block's rank in its cluster (blocks 2i, 2i + 1 form cluster i), and the barrier inits of both blocks
  // visible before either multicasts into or arrives on the other.
  const uint32_t rank = CLUSTER > 1 ? clusterRank() : 0;
  if constexpr (CLUSTER > 1) clusterSync();

  const int colTiles = (p.N + BN - 1) / BN;
  const int total = tileCount<BM * CLUSTER>(p, seg, colTiles);
  const int KT = (p.K + kBK - 1) / kBK;
  const int firstTile = blockIdx.x / CLUSTER, tileStride = gridDim.x / CLUSTER;
  // Tile t of the list (of height BM * CLUSTER), this block's BM rows of it.
  auto coordOf = [&](int t) {
    TileCoord c = tileAt<BM * CLUSTER>(p, seg, t, colTiles, BN);
    c.rowStart += static_cast<int>(rank) * BM;
    return c;
  };
  // The weight tile of stage s: one box, or this block's half of it multicast to both blocks.
  auto loadB = [&](int s, int kt, int bRow0) {
    if constexpr (CLUSTER == 1) {
      tmaLoad2d(bTile(s), &bMap, kt * kBK, bRow0, &full[s]);
    } else {
      constexpr int kHalf = BN / CLUSTER;
      tmaLoad2dMulticast(bTile(s) + rank * kHalf * 128, &bMap, kt * kBK, bRow0 + static_cast<int>(rank) * kHalf,
                         &full[s], static_cast<uint16_t>((1u << CLUSTER) - 1));
    }
  };
  // Cluster: the producer leaves only once the consumers of both blocks released every stage it filled (the
  // peer still arrives on this block's barriers and multicasts into its shared memory until then).
  auto producerTail = [&](int it) {
    if constexpr (CLUSTER > 1) {
      for (int j = it; j < it + STAGES; j++) barWait(&empty[j % STAGES], ((j / STAGES) & 1) ^ 1);
    }
  };

  if (wg == 0) {
    // ---- producer ----
    if (kSetMaxRegs) setMaxRegs<40>(false);
    if (A_TMA) {
      if (wt != 0) return;
      int it = 0;
      for (int t = firstTile; t < total; t += tileStride) {
        const TileCoord tc = coordOf(t);
        const int bRow0 = tc.expert * p.N + tc.n0;
        for (int kt = 0; kt < KT; kt++, it++) {
          const int s = it % STAGES;
          barWait(&empty[s], ((it / STAGES) & 1) ^ 1);
          barArriveExpectTx(&full[s], Cfg::kStageBytes);
          tmaLoad2d(aTile(s), &aMap, kt * kBK, tc.rowStart, &full[s]);
          loadB(s, kt, bRow0);
        }
      }
      producerTail(it);
      return;
    }
    const Elem* A = static_cast<const Elem*>(p.A);
    constexpr int ROWS_PER_PASS = 128 / 8;  // 8 threads per 128-byte row
    constexpr int PASSES = BM / ROWS_PER_PASS;
    const int chunk = wt % 8;
    int it = 0;
    for (int t = firstTile; t < total; t += tileStride) {
      const TileCoord tc = coordOf(t);
      const Elem* aRow[PASSES];
#pragma unroll
      for (int i = 0; i < PASSES; i++) {
        const int r = tc.rowStart + wt / 8 + i * ROWS_PER_PASS;
        const int src = r < tc.rowEnd ? gemm::sourceRow(p, r) : -1;
        aRow[i] = src >= 0 ? A + static_cast<long long>(src) * p.lda : nullptr;
      }
      const int bRow0 = tc.expert * p.N + tc.n0;
      if constexpr (INT4) {
        // Thread wt owns weight rows wt, wt + 128, ...: it copies their codes and scales into the raw stage DEPTH k
        // tiles ahead, and dequantizes only what it copied itself, so the raw ring needs no barrier. Its groups of
        // cp.async: one per k tile (the gathered A rows of tile kt ride in tile kt + DEPTH's group).
        constexpr int RPT = BN / 128, DEPTH = STAGES - 1;
        const int words = p.K / 8, groups = p.K / p.groupSize;
        const bool twoSlots = p.groupSize == 32;  // else one scale covers the 64-deep k tile
        const uint32_t* qRow[RPT];
        const float* sRow[RPT];
        const float* zRow[RPT];
#pragma unroll
        for (int r = 0; r < RPT; r++) {
          const int n = tc.n0 + wt + r * 128;
          const long long row = static_cast<long long>(tc.expert) * p.N + n;
          qRow[r] = n < p.N ? reinterpret_cast<const uint32_t*>(p.bInt4) + row * words : nullptr;
          sRow[r] = n < p.N ? p.bScales + row * groups : nullptr;
          zRow[r] = n < p.N && p.bZeros ? p.bZeros + row * groups : nullptr;
        }
        const int itBase = it;
        auto issueRaw = [&](int kt) {
          const uint32_t rs = smemAddr(raw + ((itBase + kt) % STAGES) * Cfg::kRawStageBytes);
#pragma unroll
          for (int r = 0; r < RPT; r++) {
            const int nl = wt + r * 128;
            const bool ok = qRow[r] != nullptr;
            const uint32_t* q = ok ? qRow[r] + kt * 8 : reinterpret_cast<const uint32_t*>(p.bInt4);
            cpAsync16(rs + nl * 32, q, ok);
            cpAsync16(rs + nl * 32 + 16, q + 4, ok);
            const int g = (kt * kBK) / p.groupSize;
            const float* sc = ok ? sRow[r] + g : p.bScales;
            if (twoSlots) cpAsyncSmall<8>(rs + BN * 32 + nl * 8, sc, ok);
            else cpAsyncSmall<4>(rs + BN * 32 + nl * 8, sc, ok);
            if (p.bZeros) {
              const float* zp = zRow[r] != nullptr ? zRow[r] + g : p.bZeros;
              if (twoSlots) cpAsyncSmall<8>(rs + BN * 40 + nl * 8, zp, ok);
              else cpAsyncSmall<4>(rs + BN * 40 + nl * 8, zp, ok);
            }
          }
        };
        for (int kt = 0; kt < DEPTH; kt++) {
          if (kt < KT) issueRaw(kt);
          cpAsyncCommit();
        }
        for (int kt = 0; kt < KT; kt++, it++) {
          const int s = it % STAGES;
          barWait(&empty[s], ((it / STAGES) & 1) ^ 1);
          const int k = kt * kBK + chunk * 8;
          const uint32_t aBase = smemAddr(aTile(s));
#pragma unroll
          for (int i = 0; i < PASSES; i++) {
            const int row = wt / 8 + i * ROWS_PER_PASS;
            const uint32_t dst = aBase + row * 128 + ((chunk ^ (row & 7)) << 4);
            const bool ok = aRow[i] != nullptr && k < p.K;
            cpAsync16(dst, ok ? aRow[i] + k : A, ok);
          }
          cpAsyncArriveNoinc(&full[s]);
          if (kt + DEPTH < KT) issueRaw(kt + DEPTH);
          cpAsyncCommit();
          cpAsyncWaitGroup<DEPTH>();  // this thread's raw stage kt has landed
          const unsigned char* rs = raw + (it % STAGES) * Cfg::kRawStageBytes;
          unsigned char* bs = bTile(s);
#pragma unroll
          for (int r = 0; r < RPT; r++) {
            const int nl = wt + r * 128;
            const uint4 c0 = *reinterpret_cast<const uint4*>(rs + nl * 32);
            const uint4 c1 = *reinterpret_cast<const uint4*>(rs + nl * 32 + 16);
            const float2 sc = *reinterpret_cast<const float2*>(rs + BN * 32 + nl * 8);
            float2 zp = make_float2(8.f, 8.f);
            if (p.bZeros) zp = *reinterpret_cast<const float2*>(rs + BN * 40 + nl * 8);
            constexpr float kBase = std::is_same<Elem, __nv_bfloat16>::value ? 128.f : 1024.f;
            const uint32_t s0 = halfPair<Elem>(sc.x), s1 = twoSlots ? halfPair<Elem>(sc.y) : s0;
            const uint32_t z0 = halfPair<Elem>(kBase + zp.x), z1 = twoSlots ? halfPair<Elem>(kBase + zp.y) : z0;
            const uint32_t w[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
            unsigned char* dstRow = bs + nl * 128;
#pragma unroll
            for (int j = 0; j < 8; j++) {
              *reinterpret_cast<uint4*>(dstRow + ((j ^ (nl & 7)) << 4)) = dequantWord<Elem>(w[j], j < 4 ? z0 : z1, j < 4 ? s0 : s1);
            }
          }
          barArrive(&full[s]);
        }
      } else {
        for (int kt = 0; kt < KT; kt++, it++) {
          const int s = it % STAGES;
          barWait(&empty[s], ((it / STAGES) & 1) ^ 1);
          if (wt == 0) {
            barArriveExpectTx(&full[s], Cfg::kBTileBytes);
            loadB(s, kt, bRow0);
          }
          const int k = kt * kBK + chunk * 8;
          const uint32_t aBase = smemAddr(aTile(s));
#pragma unroll
          for (int i = 0; i < PASSES; i++) {
            const int row = wt / 8 + i * ROWS_PER_PASS;
            const uint32_t dst = aBase + row * 128 + ((chunk ^ (row & 7)) << 4);
            const bool ok = aRow[i] != nullptr && k < p.K;
            cpAsync16(dst, ok ? aRow[i] + k : A, ok);
          }
          cpAsyncArriveNoinc(&full[s]);
        }
      }
    }
    cpAsyncWaitAll();
    if (wt == 0) producerTail(it);
    return;
  }

  // ---- consumers ----
  if (kSetMaxRegs) setMaxRegs<232>(true);
  const int c = wg - 1;
  const int rowOff = (c / Cfg::kWgCols) * 64;
  const int colOff = (c % Cfg::kWgCols) * WN;
  const int warp = wt / 32, lane = wt % 32;
  using E = gemm::Epi<OutT, EPI>;
  // Output pairs (columns 2t, 2t+1 of a fragment) as one store: rows start on a pair boundary.
  const bool pairedOut = p.ldc % 2 == 0 && (reinterpret_cast<uintptr_t>(p.C) % (2 * sizeof(OutT))) == 0;
  float acc[WN / 2];
  // A stage's buffers are free once this warp's wgmma on them retired: one arrival per warp on the stage's empty
  // barrier of every block of the cluster (the peer's producer multicasts into this block's buffers too).
  auto release = [&](int s) {
    barArrive(&empty[s]);
    if constexpr (CLUSTER > 1) barArriveCluster(&empty[s], rank ^ 1u);
  };
  int it = 0;
  for (int t = firstTile; t < total; t += tileStride) {
    const TileCoord tc = coordOf(t);
    const bool hasRows = __shfl_sync(0xffffffffu, tc.rowStart + rowOff < tc.rowEnd ? 1 : 0, 0) != 0;
    // This thread's two epilogue rows, and their SwiGLU row scales loaded now (their latency hides under the mainloop).
    const int row0 = tc.rowStart + rowOff + warp * 16 + lane / 4;
    float rowScale[2] = {1.f, 1.f};
    if (EPI == Epilogue::kSwiglu) {
#pragma unroll
      for (int h = 0; h < 2; h++) {
        if (row0 + 8 * h < tc.rowEnd) rowScale[h] = E::rowScale(p, row0 + 8 * h);
      }
    }
    // combineAdd: the token each epilogue row adds into, and its routing weight (rowScale).
    int addToken[2] = {0, 0};
    if (EPI == Epilogue::kStore && p.combineAdd != nullptr) {
#pragma unroll
      for (int h = 0; h < 2; h++) {
        if (row0 + 8 * h < tc.rowEnd) {
          const int q = p.rowToPair[row0 + 8 * h];
          addToken[h] = q / p.topK;
          rowScale[h] = p.pairWeight[q];
        }
      }
    }
    for (int kt = 0; kt < KT; kt++, it++) {
      const int s = it % STAGES;
      barWait(&full[s], (it / STAGES) & 1);
      if (hasRows) {
        if (!A_TMA) fenceProxyAsync();
        wgmmaFence();
        const uint32_t a = smemAddr(aTile(s)) + rowOff * 128;
        const uint32_t b = smemAddr(bTile(s)) + colOff * 128;
#pragma unroll
        for (int ks = 0; ks < kBK / 16; ks++) {
          Wgmma<Elem, WN>::run(acc, descriptor128B(a + ks * 32), descriptor128B(b + ks * 32), kt > 0 || ks > 0);
        }
        wgmmaCommit();
        wgmmaWait<1>();  // the previous stage's wgmma retired: its buffers can be refilled
      }
      if (kt > 0 && lane == 0) release((it - 1) % STAGES);
    }
    wgmmaWait<0>();
    if (lane == 0) release((it - 1) % STAGES);
    if (!hasRows) continue;

    // Accumulator layout of m64nN: warp w holds rows 16w + lane/4 (+8), n8 block j columns 8j + 2(lane%4) (+1):
    // acc[4j + 0/1] row r, acc[4j + 2/3] row r + 8. The same fragment as mma.sync's m16n8.
    const float* bias = p.bias ? p.bias + static_cast<long long>(tc.expert) * p.N : nullptr;
    const int t4 = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int r = row0 + half * 8;
      if (r >= tc.rowEnd) continue;
      OutT* C = static_cast<OutT*>(p.C) + static_cast<long long>(r) * p.ldc;
      if (EPI == Epilogue::kSwiglu) {
        // Interleave width 8: n8 block 2j holds gate columns, block 2j+1 the matching up columns; a thread's two
        // outputs are adjacent and go out as one pair where the row is aligned for it.
        const float sc = rowScale[half];
#pragma unroll
        for (int j = 0; j < WN / 16; j++) {
          const int gcol = tc.n0 + colOff + j * 16 + 2 * t4;
          const int i = (gcol / 16) * 8 + 2 * t4;
          const float g0 = acc[8 * j + half * 2], g1 = acc[8 * j + half * 2 + 1];
          const float u0 = acc[8 * j + 4 + half * 2], u1 = acc[8 * j + 4 + half * 2 + 1];
          if (pairedOut && gcol + 1 < p.N) {
            storePair(C + i, E::swigluValue(p, bias, sc, gcol, gcol + 8, g0, u0),
                      E::swigluValue(p, bias, sc, gcol + 1, gcol + 9, g1, u1));
          } else {
            E::swiglu(p, bias, r, sc, gcol, gcol + 8, i, g0, u0);
            E::swiglu(p, bias, r, sc, gcol + 1, gcol + 9, i + 1, g1, u1);
          }
        }
      } else if (EPI == Epilogue::kStore && p.combineAdd != nullptr) {
        float* dst = p.combineAdd + static_cast<long long>(addToken[half]) * p.ldc;
        const float w = rowScale[half], s = p.weightsApplied ? 1.f : w;
        const bool pairedAdd = p.ldc % 2 == 0 && (reinterpret_cast<uintptr_t>(p.combineAdd) % 8) == 0;
#pragma unroll
        for (int j = 0; j < WN / 8; j++) {
          const int col = tc.n0 + colOff + j * 8 + 2 * t4;
          const float v0 = s * acc[4 * j + half * 2] + (bias && col < p.N ? w * bias[col] : 0.f);
          const float v1 = s * acc[4 * j + half * 2 + 1] + (bias && col + 1 < p.N ? w * bias[col + 1] : 0.f);
          if (pairedAdd && col + 1 < p.N) {
            atomicAdd(reinterpret_cast<float2*>(dst + col), make_float2(v0, v1));
          } else {
            if (col < p.N) atomicAdd(dst + col, v0);
            if (col + 1 < p.N) atomicAdd(dst + col + 1, v1);
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < WN / 8; j++) {
          const int col = tc.n0 + colOff + j * 8 + 2 * t4;
          const float v0 = acc[4 * j + half * 2], v1 = acc[4 * j + half * 2 + 1];
          if (pairedOut && col + 1 < p.N) {
            if (EPI == Epilogue::kAccumulate) {
              const float2 c = *reinterpret_cast<const float2*>(C + col);
              storePair(C + col, c.x + v0, c.y + v1);
            } else {
              storePair(C + col, v0 + (bias ? bias[col] : 0.f), v1 + (bias ? bias[col + 1] : 0.f));
            }
          } else {
            E::store2(p, bias, r, col, v0, v1);
          }
        }
      }
    }
  }
#endif
}

}  // namespace sm90
}  // namespace moe
