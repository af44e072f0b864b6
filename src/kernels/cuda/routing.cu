// Routing kernels: one warp per token, the token's scores in shared memory, top-k by repeated warp argmax
// (the per-token bodies are in routing_device.cuh).
#include "routing_device.cuh"

namespace moe {
namespace {

constexpr int kWarps = 4;
using routing::routeScratchBytes;

__global__ void topkSelectKernel(const float* __restrict__ logits, int T, int E, int ld, const float* __restrict__ bias,
                                 RoutingParams rp, int* __restrict__ ids, float* __restrict__ weights,
                                 float* __restrict__ sharedGate, size_t warpBytes) {
  awaitPredecessor();
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T) return;  // no block-wide barrier below
  routing::softmaxRouteToken(logits + static_cast<long long>(t) * ld, t, E, bias, rp, ids, weights, sharedGate,
                             smem + warp * warpBytes, lane);
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

void launchTopkSelect(const float* logits, int T, int E, int ld, const float* bias, const RoutingParams& rp, int* ids,
                      float* weights, float* sharedGate, cudaStream_t stream) {
  if (T == 0) return;
  const size_t warpBytes = routeScratchBytes(E, rp);
  const size_t smem = warpBytes * kWarps;
  if (smem > 48 * 1024) {
    MOE_CUDA(cudaFuncSetAttribute(topkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launchKernel("topkSelectKernel", topkSelectKernel, ceilDiv(T, kWarps), kWarps * 32, smem, stream, logits, T, E, ld,
               bias, rp, ids, weights, sharedGate, warpBytes);
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
