// Routing kernels: one warp per token, the token's scores in shared memory, top-k by repeated warp argmax
// (the per-token bodies are in routing_device.cuh).
#include "routing_device.cuh"

namespace moe {
namespace {

constexpr int kWarps = 4;
using routing::routeScratchBytes;

// The split-K reduction of one token's row (launchSplitKReduce's order: 0 + slice 0 + slice 1 + ..., then the
// bias) into row (the warp's shared memory): a lane's four columns of a 128-column group at a time, eight slices
// of them in flight.
__device__ __forceinline__ void reduceSlabsRow(const float* __restrict__ partial, int kSplit, long long slab,
                                               const float* __restrict__ routerBias, float* row, long long rowOff,
                                               int ld, int lane) {
  for (int c0 = 0; c0 < ld; c0 += 128) {
    float v[4] = {0.f, 0.f, 0.f, 0.f};
    int z = 0;
    for (; z + 8 <= kSplit; z += 8) {
      float part[8][4];
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
          const int col = c0 + lane + 32 * c;
          part[j][c] = col < ld ? partial[(z + j) * slab + rowOff + col] : 0.f;
        }
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) v[c] += part[j][c];
    }
    for (; z < kSplit; z++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int col = c0 + lane + 32 * c;
        if (col < ld) v[c] += partial[z * slab + rowOff + col];
      }
#pragma unroll
    for (int c = 0; c < 4; c++) {
      const int col = c0 + lane + 32 * c;
      if (col < ld) row[col] = v[c] + (routerBias ? routerBias[col] : 0.f);
    }
  }
  __syncwarp();  // the row's writes visible to the warp's other lanes
}

// partial != null: the token's logits are first summed from the router's split-K slabs (reduceSlabsRow) into the
// warp's row of shared memory after the kWarps scratch areas, and routed from there (logits is not read).
__global__ void topkSelectKernel(const float* __restrict__ logits, int T, int E, int ld, const float* __restrict__ bias,
                                 RoutingParams rp, int* __restrict__ ids, float* __restrict__ weights,
                                 float* __restrict__ sharedGate, size_t warpBytes, const float* __restrict__ partial,
                                 int kSplit, const float* __restrict__ routerBias) {
  awaitPredecessor();
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T) return;  // no block-wide barrier below
  const long long rowOff = static_cast<long long>(t) * ld;
  const float* row = logits + rowOff;
  if (partial != nullptr) {
    float* summed = reinterpret_cast<float*>(smem + kWarps * warpBytes) + warp * ld;
    reduceSlabsRow(partial, kSplit, static_cast<long long>(T) * ld, routerBias, summed, rowOff, ld, lane);
    row = summed;
  }
  routing::softmaxRouteToken(row, t, E, bias, rp, ids, weights, sharedGate, smem + warp * warpBytes, lane);
}

__global__ void moeScoresKernel(const float* __restrict__ logits, int T, int E, int ld, const float* __restrict__ bias,
                                RoutingParams rp, float* __restrict__ scores, int* __restrict__ ids, float* __restrict__ weights,
                                float* __restrict__ sharedGate, size_t warpBytes) {
  awaitPredecessor();
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T) return;
  routing::noauxRouteToken(logits + static_cast<long long>(t) * ld, t, E, bias, rp, scores, ids, weights, sharedGate,
                           smem + warp * warpBytes, lane);
}

}  // namespace

void launchTopkSelectSplitK(const float* partial, int kSplit, const float* routerBias, const float* logits, int T,
                            int E, int ld, const float* bias, const RoutingParams& rp, int* ids, float* weights,
                            float* sharedGate, cudaStream_t stream) {
  if (T == 0) return;
  const size_t warpBytes = (routeScratchBytes(E, rp) + 15) / 16 * 16;
  const size_t smem = (warpBytes + (partial != nullptr ? static_cast<size_t>(ld) * sizeof(float) : 0)) * kWarps;
  if (smem > 48 * 1024) {
    MOE_CUDA(cudaFuncSetAttribute(topkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launchKernel("topkSelectKernel", topkSelectKernel, ceilDiv(T, kWarps), kWarps * 32, smem, stream, logits, T, E, ld,
               bias, rp, ids, weights, sharedGate, warpBytes, partial, kSplit, routerBias);
}

void launchTopkSelect(const float* logits, int T, int E, int ld, const float* bias, const RoutingParams& rp, int* ids,
                      float* weights, float* sharedGate, cudaStream_t stream) {
  launchTopkSelectSplitK(nullptr, 0, nullptr, logits, T, E, ld, bias, rp, ids, weights, sharedGate, stream);
}

void launchMoeScores(const float* logits, int T, int E, int ld, const float* bias, const RoutingParams& rp,
                     float* scores, int* ids, float* weights, float* sharedGate, cudaStream_t stream) {
  if (T == 0) return;
  const size_t warpBytes = routeScratchBytes(E, rp);
  const size_t smem = warpBytes * kWarps;
  if (smem > 48 * 1024) {
    MOE_CUDA(cudaFuncSetAttribute(moeScoresKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launchKernel("moeScoresKernel", moeScoresKernel, ceilDiv(T, kWarps), kWarps * 32, smem, stream, logits, T, E, ld, bias,
               rp, scores, ids, weights, sharedGate, warpBytes);
}

}  // namespace moe
