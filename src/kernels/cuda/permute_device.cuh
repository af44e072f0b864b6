// The one-block permute of a few pairs and the segment scan it shares with the larger permute (permute.cu) and the
// fused decode route kernel (decode_route.cu).
#pragma once

#include "moe_kernels.h"

namespace moe {
namespace permute {

constexpr int kScanThreads = 256;
constexpr int kSmallPairs = 256;   // at or below this many pairs, one block does everything
constexpr int kSmallExperts = 2048;

// Exclusive block scan of kTileClasses + 1 running sums; each thread owns a contiguous run of experts.
// lengthOf(e) gives segment e's row count; writes offsets[0..E] (starting at base) and tilePrefix. Blocks of up to
// MAX_THREADS threads.
template <int MAX_THREADS = kScanThreads, typename LengthOf>
__device__ void scanSegments(int E, int base, LengthOf lengthOf, int* offsets, int* tilePrefix) {
  __shared__ int partial[kTileClasses + 1][MAX_THREADS];
  const int tid = threadIdx.x, nt = blockDim.x;
  const int per = (E + nt - 1) / nt, begin = min(E, tid * per), end = min(E, begin + per);
  int sums[kTileClasses + 1] = {0, 0, 0, 0, 0};
  for (int e = begin; e < end; e++) {
    const int len = lengthOf(e);
    sums[0] += len;
#pragma unroll
    for (int c = 0; c < kTileClasses; c++) sums[c + 1] += (len + (16 << c) - 1) / (16 << c);
  }
#pragma unroll
  for (int c = 0; c <= kTileClasses; c++) partial[c][tid] = sums[c];
  __syncthreads();
  // Hillis-Steele inclusive scan over the threads, then shift to exclusive.
  for (int o = 1; o < nt; o <<= 1) {
    int v[kTileClasses + 1];
#pragma unroll
    for (int c = 0; c <= kTileClasses; c++) v[c] = tid >= o ? partial[c][tid - o] : 0;
    __syncthreads();
#pragma unroll
    for (int c = 0; c <= kTileClasses; c++) partial[c][tid] += v[c];
    __syncthreads();
  }
  int run[kTileClasses + 1];
#pragma unroll
  for (int c = 0; c <= kTileClasses; c++) run[c] = partial[c][tid] - sums[c];
  for (int e = begin; e < end; e++) {
    offsets[e] = base + run[0];
#pragma unroll
    for (int c = 0; c < kTileClasses; c++) tilePrefix[c * (E + 1) + e] = run[c + 1];
    const int len = lengthOf(e);
    run[0] += len;
#pragma unroll
    for (int c = 0; c < kTileClasses; c++) run[c + 1] += (len + (16 << c) - 1) / (16 << c);
  }
  if (tid == nt - 1) {
    offsets[E] = base + run[0];
#pragma unroll
    for (int c = 0; c < kTileClasses; c++) tilePrefix[c * (E + 1) + E] = run[c + 1];
  }
}

__device__ __forceinline__ int alignUp(int v, int a) { return (v + a - 1) / a * a; }

// Everything in one block (of kScanThreads threads), for a few pairs: thread e walks the (shared-memory) ids and
// appends its pairs. Also the tail of the fused decode route kernel (decode_route.cu).
// PermuteBuffers.zeroOut: n floats set to 0 by this block (16-byte stores where the base is aligned).
__device__ __forceinline__ void zeroFillBlock(float* __restrict__ out, long long n) {
  if (out == nullptr || n <= 0) return;
  long long i = 0;
  if ((reinterpret_cast<uintptr_t>(out) & 15) == 0) {
    float4* o4 = reinterpret_cast<float4*>(out);
    for (long long j = threadIdx.x; j < n / 4; j += blockDim.x) o4[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    i = n / 4 * 4;
  }
  for (long long j = i + threadIdx.x; j < n; j += blockDim.x) out[j] = 0.f;
}

__device__ __forceinline__ void permuteSmallBlock(const int* __restrict__ ids, int n, int E, int alignment, int R,
                                                  int* __restrict__ tokensPerExpert, int* __restrict__ offsets,
                                                  int* __restrict__ tilePrefix, int* __restrict__ rowToPair,
                                                  int* __restrict__ rowMap) {
  __shared__ int sIds[kSmallPairs];
  __shared__ int sCounts[kSmallExperts];
  __shared__ int sOffsets[kSmallExperts + 1];
  for (int i = threadIdx.x; i < n; i += blockDim.x) sIds[i] = ids[i];
  for (int e = threadIdx.x; e < E; e += blockDim.x) sCounts[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int e = sIds[i];
    if (e >= 0 && e < E) atomicAdd(&sCounts[e], 1);
    else rowMap[i] = -1;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) tokensPerExpert[e] = sCounts[e];
  scanSegments(E, 0, [&](int e) { return alignUp(sCounts[e], alignment); }, sOffsets, tilePrefix);
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = sOffsets[e];
  for (int r = sOffsets[E] + threadIdx.x; r < R; r += blockDim.x) rowToPair[r] = -1;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int row = sOffsets[e];
    for (int i = 0; i < n; i++) {
      if (sIds[i] == e) {
        rowToPair[row] = i;
        rowMap[i] = row;
        row++;
      }
    }
    for (; row < sOffsets[e + 1]; row++) rowToPair[row] = -1;
  }
}

}  // namespace permute
}  // namespace moe
