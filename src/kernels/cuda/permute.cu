// Dispatch (docs/semantics.md section 3): a stable counting sort of the (token, slot) pairs by expert.
// Small problems (decode) run as one block; larger ones as count -> segments -> place, where each expert's
// block ranks its pairs with warp ballots, so the order within an expert is the pairs' flat order without atomics.
#include <cstdint>
#include <cstdlib>

#include "permute_device.cuh"

namespace moe {
namespace {

using namespace permute;

__global__ void countKernel(const int* __restrict__ ids, int n, int E, int* __restrict__ counts, int* __restrict__ rowMap) {
  awaitPredecessor();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int e = ids[i];
    if (e >= 0 && e < E) atomicAdd(&counts[e], 1);
    else rowMap[i] = -1;
  }
}

__global__ void segmentsFromCountsKernel(const int* __restrict__ counts, int E, int alignment,
                                         int* __restrict__ tokensPerExpert, int* __restrict__ offsets,
                                         int* __restrict__ tilePrefix) {
  awaitPredecessor();
  for (int e = threadIdx.x; e < E; e += blockDim.x) tokensPerExpert[e] = counts[e];
  scanSegments(E, 0, [&](int e) { return alignUp(counts[e], alignment); }, offsets, tilePrefix);
}

__global__ void segmentsFromCallerKernel(const int* __restrict__ segments, bool areOffsets, int E,
                                         int* __restrict__ offsets, int* __restrict__ tilePrefix) {
  awaitPredecessor();
  if (areOffsets) {
    scanSegments(E, segments[0], [&](int e) { return segments[e + 1] - segments[e]; }, offsets, tilePrefix);
  } else {
    scanSegments(E, 0, [&](int e) { return segments[e]; }, offsets, tilePrefix);
  }
}

// One block per expert: rank this expert's pairs in flat order with ballots; also marks the expert's padding
// rows (and, in the last block, the unused tail) as empty.
__global__ void placeKernel(const int* __restrict__ ids, int n, int E, const int* __restrict__ offsets,
                            const int* __restrict__ counts, int R, int* __restrict__ rowToPair, int* __restrict__ rowMap) {
  awaitPredecessor();
  __shared__ int warpTotals[32];
  const int e = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int base = offsets[e];
  int running = 0;
  for (int chunk = 0; chunk < n; chunk += blockDim.x) {
    const int i = chunk + threadIdx.x;
    const bool mine = i < n && ids[i] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warpTotals[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < warps; w++) {
      const int c = warpTotals[w];
      before += w < warp ? c : 0;
      total += c;
    }
    if (mine) {
      const int row = base + running + before + __popc(ballot & ((1u << lane) - 1));
      rowToPair[row] = i;
      rowMap[i] = row;
    }
    running += total;
    __syncthreads();
  }
  for (int r = base + counts[e] + threadIdx.x; r < offsets[e + 1]; r += blockDim.x) rowToPair[r] = -1;
  if (e == E - 1) {
    for (int r = offsets[E] + threadIdx.x; r < R; r += blockDim.x) rowToPair[r] = -1;
  }
}

// The count -> segments -> place chain in one launch (many pairs): block e histograms every pair in shared memory
// (the ids are read from L2 by all E blocks, a few hundred KB at T = 4096), takes its segment's start from the
// counts before it, and ranks its own pairs: each thread a contiguous run of pairs, one block scan per chunk, so the
// order within an expert is the pairs' flat order as in placeKernel. Block 0 also writes the segment tables and
// the -1 rowMap entries of invalid ids. Four launches (memset, count, segments, place: 0.059 ms at T = 4096 on the
// H200, placeKernel's two barriers per 1024 pairs the most of it) become one.
// VEC (ids 16-byte aligned): the histogram reads four ids per load, and a thread's run of 16 comes in four 16-byte
// loads into registers that both the count and the placement read (the scalar loop issued 16 dependent loads per
// pass; the kernel is latency-bound on them: ncu at T = 4096, 28.6 cycles per issued instruction, 25 us).
constexpr int kOnePassThreads = 1024, kOnePassMaxExperts = 1024, kOnePassRun = 16;
template <bool VEC>
__global__ void __launch_bounds__(kOnePassThreads) permuteOnePassKernel(const int* __restrict__ ids, int n, int E,
                                                                          int alignment, int R,
                                                                          int* __restrict__ tokensPerExpert,
                                                                          int* __restrict__ offsets,
                                                                          int* __restrict__ tilePrefix,
                                                                          int* __restrict__ rowToPair,
                                                                          int* __restrict__ rowMap) {
  awaitPredecessor();
  __shared__ int counts[kOnePassMaxExperts];
  __shared__ int warpTotals[kOnePassThreads / 32];
  __shared__ int segmentBase;
  const int e = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int x = tid; x < E; x += kOnePassThreads) counts[x] = 0;
  __syncthreads();
  auto countId = [&](int i, int id) {
    if (id >= 0 && id < E) atomicAdd(&counts[id], 1);
    else if (e == 0) rowMap[i] = -1;
  };
  int scalarFrom = 0;
  if constexpr (VEC) {
    const int4* ids4 = reinterpret_cast<const int4*>(ids);
    for (int q = tid; q < n / 4; q += kOnePassThreads) {
      const int4 v = ids4[q];
      countId(4 * q, v.x);
      countId(4 * q + 1, v.y);
      countId(4 * q + 2, v.z);
      countId(4 * q + 3, v.w);
    }
    scalarFrom = n / 4 * 4;
  }
  for (int i = scalarFrom + tid; i < n; i += kOnePassThreads) countId(i, ids[i]);
  __syncthreads();
  if (warp == 0) {
    int s = 0;
    for (int x = lane; x < e; x += 32) s += alignUp(counts[x], alignment);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) segmentBase = s;
  }
  if (e == 0) {
    for (int x = tid; x < E; x += kOnePassThreads) tokensPerExpert[x] = counts[x];
    scanSegments<kOnePassThreads>(E, 0, [&](int x) { return alignUp(counts[x], alignment); }, offsets, tilePrefix);
  }
  __syncthreads();
  const int base = segmentBase, count = counts[e];
  int running = 0;
  for (int chunk = 0; chunk < n; chunk += kOnePassThreads * kOnePassRun) {
    const int begin = min(n, chunk + tid * kOnePassRun), end = min(n, begin + kOnePassRun);
    int mine = 0;
    int run[VEC ? kOnePassRun : 1];
    if constexpr (VEC) {
      if (end - begin == kOnePassRun) {  // begin is a multiple of 16: aligned
#pragma unroll
        for (int j = 0; j < kOnePassRun / 4; j++) {
          const int4 v = reinterpret_cast<const int4*>(ids + begin)[j];
          run[4 * j] = v.x;
          run[4 * j + 1] = v.y;
          run[4 * j + 2] = v.z;
          run[4 * j + 3] = v.w;
        }
      } else {
#pragma unroll
        for (int j = 0; j < kOnePassRun; j++) run[j] = begin + j < end ? ids[begin + j] : -1;
      }
#pragma unroll
      for (int j = 0; j < kOnePassRun; j++) mine += run[j] == e;
    } else {
      for (int i = begin; i < end; i++) mine += ids[i] == e;
    }
    // exclusive block scan of `mine`
    int incl = mine;
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    if (lane == 31) warpTotals[warp] = incl;
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kOnePassThreads / 32; w++) {
      const int c = warpTotals[w];
      before += w < warp ? c : 0;
      total += c;
    }
    int row = base + running + before + incl - mine;
    if constexpr (VEC) {
#pragma unroll
      for (int j = 0; j < kOnePassRun; j++) {
        if (run[j] == e) {  // -1 past the end: never e
          rowToPair[row] = begin + j;
          rowMap[begin + j] = row;
          row++;
        }
      }
    } else {
      for (int i = begin; i < end && mine > 0; i++) {
        if (ids[i] == e) {
          rowToPair[row] = i;
          rowMap[i] = row;
          row++;
          mine--;
        }
      }
    }
    running += total;
    __syncthreads();  // warpTotals is rewritten by the next chunk
  }
  for (int r = base + count + tid; r < base + alignUp(count, alignment); r += kOnePassThreads) rowToPair[r] = -1;
  if (e == E - 1) {
    for (int r = base + alignUp(count, alignment) + tid; r < R; r += kOnePassThreads) rowToPair[r] = -1;
  }
}

__global__ void permuteSmallKernel(const int* __restrict__ ids, int n, int E, int alignment, int R,
                                   int* __restrict__ tokensPerExpert, int* __restrict__ offsets,
                                   int* __restrict__ tilePrefix, int* __restrict__ rowToPair, int* __restrict__ rowMap,
                                   float* __restrict__ zeroOut, long long zeroFloats) {
  awaitPredecessor();
  zeroFillBlock(zeroOut, zeroFloats);
  permuteSmallBlock(ids, n, E, alignment, R, tokensPerExpert, offsets, tilePrefix, rowToPair, rowMap);
}

__global__ void gatherRowsKernel(const float* __restrict__ x, int D, const int* __restrict__ rowToPair, int k, int R,
                                 const float* __restrict__ pairScale, float* __restrict__ out) {
  awaitPredecessor();
  const long long total = static_cast<long long>(R) * D;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(idx / D), d = static_cast<int>(idx % D);
    const int pair = rowToPair[r];
    if (pair < 0) {
      out[idx] = 0.f;
    } else {
      const float v = x[static_cast<long long>(pair / k) * D + d];
      out[idx] = pairScale ? v * pairScale[pair] : v;
    }
  }
}

}  // namespace

void launchPermute(const int* ids, int T, int k, int E, int alignment, int R, const PermuteBuffers& out,
                   cudaStream_t stream) {
  const int n = T * k;
  if (n <= kSmallPairs && E <= kSmallExperts) {
    launchKernel("permuteSmallKernel", permuteSmallKernel, 1, kScanThreads, 0, stream, ids, n, E, alignment, R,
                 out.tokensPerExpert, out.offsets, out.tilePrefix, out.rowToPair, out.rowMap, out.zeroOut,
                 out.zeroFloats);
    return;
  }
  if (out.zeroOut != nullptr && out.zeroFloats > 0) {
    throw std::logic_error("permute: zeroOut is filled by the one-block permute only (T * k <= 256 pairs)");
  }
  if (E > 0 && E <= kOnePassMaxExperts && !legacyPrefillKernels()) {
    // TFJS_MOE_CUDA_PERMUTE_VEC=0 (A/B timing, read at each launch): the scalar id loads of session 7.
    const char* v = std::getenv("TFJS_MOE_CUDA_PERMUTE_VEC");
    const bool vec = (reinterpret_cast<uintptr_t>(ids) & 15) == 0 && (v == nullptr || v[0] != '0');
    launchKernel("permuteOnePassKernel", vec ? permuteOnePassKernel<true> : permuteOnePassKernel<false>, E,
                 kOnePassThreads, 0, stream, ids, n, E, alignment, R, out.tokensPerExpert, out.offsets,
                 out.tilePrefix, out.rowToPair, out.rowMap);
    return;
  }
  {
    // The memset is not a kernel: the launches right after it get an ordinary (full) dependency.
    PdlScope noPdl(false);
    MOE_CUDA(cudaMemsetAsync(out.scratch, 0, sizeof(int) * E, stream));
    if (n > 0) {
      countKernel<<<std::min(ceilDiv(n, 256), 1024), 256, 0, stream>>>(ids, n, E, out.scratch, out.rowMap);
      MOE_LAUNCHED("countKernel");
    }
  }
  // An ordinary launch too: with n == 0 its predecessor is the memset.
  segmentsFromCountsKernel<<<1, kScanThreads, 0, stream>>>(out.scratch, E, alignment, out.tokensPerExpert,
                                                           out.offsets, out.tilePrefix);
  MOE_LAUNCHED("segmentsFromCountsKernel");
  launchKernel("placeKernel", placeKernel, E, 1024, 0, stream, ids, n, E, out.offsets, out.scratch, R, out.rowToPair,
               out.rowMap);
}

void launchSegmentsFrom(const int* segments, bool areOffsets, int E, int* offsets, int* tilePrefix,
                        cudaStream_t stream) {
  segmentsFromCallerKernel<<<1, kScanThreads, 0, stream>>>(segments, areOffsets, E, offsets, tilePrefix);
  MOE_LAUNCHED("segmentsFromCallerKernel");
}

void launchGatherRows(const float* x, int D, const int* rowToPair, int k, int R, const float* pairScale, float* out,
                      cudaStream_t stream) {
  const long long total = static_cast<long long>(R) * D;
  if (total == 0) return;
  gatherRowsKernel<<<static_cast<int>(std::min<long long>((total + 255) / 256, 65535)), 256, 0, stream>>>(
      x, D, rowToPair, k, R, pairScale, out);
  MOE_LAUNCHED("gatherRowsKernel");
}

}  // namespace moe
