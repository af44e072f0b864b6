// Routing kernels: one warp per token, the token's scores in shared memory, top-k by repeated warp argmax.
// Every top-k here orders by larger value first, NaN below everything (NaN never wins), ties to lower index.
#include "moe_kernels.h"

namespace moe {
namespace {

constexpr int kWarps = 4;

struct Cand {
  float v;
  int i;  // -1: nothing
};

__device__ __forceinline__ bool better(const Cand& a, const Cand& b) {
  if (a.i < 0) return false;
  if (b.i < 0) return true;
  const bool na = isnan(a.v), nb = isnan(b.v);
  if (na != nb) return nb;
  if (!na && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}

__device__ __forceinline__ Cand warpBest(Cand c) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Cand other{__shfl_xor_sync(0xffffffffu, c.v, o), __shfl_xor_sync(0xffffffffu, c.i, o)};
    if (better(other, c)) c = other;
  }
  return c;
}

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Per-warp shared memory: values [E] floats, then taken [E] bytes (rounded to 4).
inline size_t perWarpBytes(int E, int extraFloats) {
  return (static_cast<size_t>(E) + extraFloats) * 4 + ((static_cast<size_t>(E) + extraFloats + 3) & ~size_t(3));
}

__global__ void topkSelectKernel(const float* __restrict__ logits, int T, int E, int ld, const float* __restrict__ bias,
                                 int k, bool renormalize, int* __restrict__ ids, float* __restrict__ weights,
                                 float* __restrict__ sharedGate, size_t warpBytes) {
  awaitPredecessor();
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T) return;  // no block-wide barrier below
  float* p = reinterpret_cast<float*>(smem + warp * warpBytes);
  unsigned char* taken = reinterpret_cast<unsigned char*>(p + E);
  const float* row = logits + static_cast<long long>(t) * ld;

  float m = -INFINITY;
  for (int e = lane; e < E; e += 32) m = fmaxf(m, row[e]);
  m = warpMax(m);
  float s = 0.f;
  for (int e = lane; e < E; e += 32) {
    const float v = expf(row[e] - m);
    p[e] = v;
    taken[e] = 0;
    s += v;
  }
  s = warpSum(s);
  const float inv = 1.f / s;
  for (int e = lane; e < E; e += 32) p[e] *= inv;
  __syncwarp();

  float chosenSum = 0.f;
  for (int j = 0; j < k; j++) {
    Cand best{0.f, -1};
    for (int e = lane; e < E; e += 32) {
      if (taken[e]) continue;
      const Cand c{bias ? p[e] + bias[e] : p[e], e};
      if (better(c, best)) best = c;
    }
    best = warpBest(best);
    if (lane == 0) {
      taken[best.i] = 1;
      ids[t * k + j] = best.i;
      weights[t * k + j] = p[best.i];
      chosenSum += p[best.i];
    }
    __syncwarp();
  }
  if (lane == 0) {
    if (renormalize) {
      // ERNIE's clamp: a bias may pick experts whose p underflowed to 0 (0/0). NaN weights stay NaN either way.
      const float denom = fmaxf(chosenSum, 1e-12f);
      for (int j = 0; j < k; j++) weights[t * k + j] /= denom;
    }
    if (sharedGate) sharedGate[t] = sigmoidf(row[E]);
  }
}

__global__ void moeScoresKernel(const float* __restrict__ logits, int T, int E, int ld, const float* __restrict__ bias,
                                int nGroup, int topkGroup, int k, float rsf, bool renormalize,
                                float* __restrict__ scores, int* __restrict__ ids, float* __restrict__ weights,
                                float* __restrict__ sharedGate, size_t warpBytes) {
  awaitPredecessor();
  extern __shared__ unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= T) return;
  float* b = reinterpret_cast<float*>(smem + warp * warpBytes);  // [E] biased scores, then [nGroup] group scores
  float* groupScore = b + E;
  unsigned char* taken = reinterpret_cast<unsigned char*>(groupScore + nGroup);  // [E] experts, then [nGroup] kept
  unsigned char* kept = taken + E;
  const float* row = logits + static_cast<long long>(t) * ld;
  const int perGroup = E / nGroup;

  for (int e = lane; e < E; e += 32) {
    const float sc = sigmoidf(row[e]);
    if (scores) scores[static_cast<long long>(t) * E + e] = sc;
    b[e] = sc + (bias ? bias[e] : 0.f);
    taken[e] = 0;
  }
  __syncwarp();
  bool anyFinite = false;
  for (int g = lane; g < nGroup; g += 32) {
    Cand first{0.f, -1}, second{0.f, -1};
    for (int e = g * perGroup; e < (g + 1) * perGroup; e++) {
      const Cand c{b[e], e};
      if (better(c, first)) {
        second = first;
        first = c;
      } else if (better(c, second)) {
        second = c;
      }
    }
    const float gs = perGroup == 1 ? first.v : first.v + second.v;
    groupScore[g] = gs;
    kept[g] = 0;
    anyFinite |= isfinite(gs);
  }
  anyFinite = __any_sync(0xffffffffu, anyFinite);
  __syncwarp();

  if (!anyFinite) {  // FastDeploy's fallback: the first k experts, equal weights
    for (int j = lane; j < k; j += 32) {
      ids[t * k + j] = j;
      weights[t * k + j] = 1.f / k;
    }
  } else {
    for (int j = 0; j < topkGroup; j++) {
      Cand best{0.f, -1};
      for (int g = lane; g < nGroup; g += 32) {
        if (kept[g]) continue;
        const Cand c{groupScore[g], g};
        if (better(c, best)) best = c;
      }
      best = warpBest(best);
      if (lane == 0) kept[best.i] = 1;
      __syncwarp();
    }
    float chosenSum = 0.f;
    for (int j = 0; j < k; j++) {
      Cand best{0.f, -1};
      for (int e = lane; e < E; e += 32) {
        // Experts of dropped groups never compete, not even against a NaN of a kept group.
        if (taken[e] || !kept[e / perGroup]) continue;
        const Cand c{b[e], e};
        if (better(c, best)) best = c;
      }
      best = warpBest(best);
      if (lane == 0) {
        taken[best.i] = 1;
        const float v = sigmoidf(row[best.i]);
        ids[t * k + j] = best.i;
        weights[t * k + j] = v;
        chosenSum += v;
      }
      __syncwarp();
    }
    if (lane == 0) {
      const float denom = renormalize ? chosenSum + 1e-20f : 1.f;
      for (int j = 0; j < k; j++) weights[t * k + j] = weights[t * k + j] / denom * rsf;
    }
  }
  if (lane == 0 && sharedGate) sharedGate[t] = sigmoidf(row[E]);
}

}  // namespace

void launchTopkSelect(const float* logits, int T, int E, int ld, const float* bias, int k, bool renormalize, int* ids,
                      float* weights, float* sharedGate, cudaStream_t stream) {
  if (T == 0) return;
  const size_t warpBytes = perWarpBytes(E, 0);
  const size_t smem = warpBytes * kWarps;
  if (smem > 48 * 1024) {
    MOE_CUDA(cudaFuncSetAttribute(topkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launchKernel("topkSelectKernel", topkSelectKernel, ceilDiv(T, kWarps), kWarps * 32, smem, stream, logits, T, E, ld,
               bias, k, renormalize, ids, weights, sharedGate, warpBytes);
}

void launchMoeScores(const float* logits, int T, int E, int ld, const float* bias, int nGroup, int topkGroup, int k,
                     float routedScalingFactor, bool renormalize, float* scores, int* ids, float* weights,
                     float* sharedGate, cudaStream_t stream) {
  if (T == 0) return;
  const size_t warpBytes = perWarpBytes(E, nGroup);
  const size_t smem = warpBytes * kWarps;
  if (smem > 48 * 1024) {
    MOE_CUDA(cudaFuncSetAttribute(moeScoresKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launchKernel("moeScoresKernel", moeScoresKernel, ceilDiv(T, kWarps), kWarps * 32, smem, stream, logits, T, E, ld, bias,
               nGroup, topkGroup, k, routedScalingFactor, renormalize, scores, ids, weights, sharedGate, warpBytes);
}

}  // namespace moe
