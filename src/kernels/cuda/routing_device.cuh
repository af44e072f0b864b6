// Per-token routing bodies (docs/semantics.md sections 1, 2, 11.3, 11.4, 11.7, 11.8), one warp per token, shared
// by the routing kernels (routing.cu) and the fused decode route kernel (decode_route.cu). Every top-k here orders
// by larger value first, NaN below everything (NaN never wins), ties to lower index.
#pragma once

#include "moe_kernels.h"

namespace moe {
namespace routing {

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

// The best of n candidates across the warp: key(i) for every i that skip(i) does not rule out (-1: none).
template <typename Key, typename Skip>
__device__ __forceinline__ Cand warpArgBest(int n, int lane, Key key, Skip skip) {
  Cand best{0.f, -1};
  for (int i = lane; i < n; i += 32) {
    if (skip(i)) continue;
    const Cand c{key(i), i};
    if (better(c, best)) best = c;
  }
  return warpBest(best);
}

// Marks the `count` best of n group scores in kept[] (ties to the lower group).
__device__ __forceinline__ void keepBestGroups(const float* groupScore, int n, int count, unsigned char* kept,
                                               int lane) {
  for (int j = 0; j < count; j++) {
    const Cand best = warpArgBest(n, lane, [&](int g) { return groupScore[g]; }, [&](int g) { return kept[g] != 0; });
    if (lane == 0) kept[best.i] = 1;
    __syncwarp();
  }
}

// Register top-k: each candidate as one 64-bit key whose unsigned order is better()'s order (the value's bits made
// monotonic, NaN just above "nothing" = 0, ties to the lower index through ~index), V keys per lane. A round is a
// lane max over registers and a 5-step warp max: no shared-memory scan per round (the warp argmax rounds cost about
// 1 us each on the one warp of a decode token).
__device__ __forceinline__ unsigned long long orderKey(float v, int e) {
  unsigned int o = 0u;  // NaN
  if (!isnan(v)) {
    const unsigned int u = __float_as_uint(v == 0.f ? 0.f : v);  // -0 ties with +0, as in better()
    o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  return (static_cast<unsigned long long>(o) << 32) | static_cast<unsigned int>(~e);
}

template <int V, typename Score, typename Eligible>
__device__ __forceinline__ void topkRegisters(int E, int k, int lane, Score score, Eligible eligible, int* picked) {
  unsigned long long keys[V];
#pragma unroll
  for (int i = 0; i < V; i++) {
    const int e = lane + 32 * i;
    keys[i] = e < E && eligible(e) ? orderKey(score(e), e) : 0ull;
  }
  for (int j = 0; j < k; j++) {
    unsigned long long mine = 0ull;
#pragma unroll
    for (int i = 0; i < V; i++) mine = keys[i] > mine ? keys[i] : mine;
    unsigned long long top = mine;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const unsigned long long other = __shfl_xor_sync(0xffffffffu, top, o);
      top = other > top ? other : top;
    }
    if (top != 0ull && mine == top) {
#pragma unroll
      for (int i = 0; i < V; i++) keys[i] = keys[i] == top ? 0ull : keys[i];
    }
    if (lane == 0) picked[j] = top == 0ull ? -1 : static_cast<int>(~static_cast<unsigned int>(top & 0xffffffffull));
  }
}

// The k best eligible experts into picked[] (lane 0 writes), in order; false when E is too large for registers.
template <typename Score, typename Eligible>
__device__ __forceinline__ bool topkInRegisters(int E, int k, int lane, Score score, Eligible eligible, int* picked) {
  if (E <= 32) topkRegisters<1>(E, k, lane, score, eligible, picked);
  else if (E <= 64) topkRegisters<2>(E, k, lane, score, eligible, picked);
  else if (E <= 128) topkRegisters<4>(E, k, lane, score, eligible, picked);
  else if (E <= 256) topkRegisters<8>(E, k, lane, score, eligible, picked);
  else return false;
  return true;
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
__host__ __device__ inline size_t perWarpBytes(int E, int extraFloats) {
  return (static_cast<size_t>(E) + extraFloats) * 4 + ((static_cast<size_t>(E) + extraFloats + 3) & ~size_t(3));
}
// The per-token scratch of the routing bodies below: [E] scores, [nGroup] group scores, [k] chosen weights, [k]
// picked experts, then the taken / kept bytes.
__host__ __device__ inline size_t routeScratchBytes(int E, const RoutingParams& rp) {
  return perWarpBytes(E, rp.nGroup + 2 * rp.k);
}


// Softmax routing (greedy, group_limited_greedy) and PhiMoE's sparsemixer of token t (its logits in row):
// weights = chosen p (renormalised: / max(sum + eps, 1e-12)) * rsf. ws: the warp's routeScratchBytes(E, rp).
__device__ __forceinline__ void softmaxRouteToken(const float* row, int t, int E, const float* __restrict__ bias,
                                                  const RoutingParams& rp, int* __restrict__ ids,
                                                  float* __restrict__ weights, float* __restrict__ sharedGate,
                                                  unsigned char* ws, int lane) {
  const int k = rp.k;
  float* p = reinterpret_cast<float*>(ws);  // [E] probabilities, [nGroup] group scores, [k] chosen weights
  float* groupScore = p + E;
  float* chosen = groupScore + rp.nGroup;  // the weights stay here until the end: no global read-back
  int* picked = reinterpret_cast<int*>(chosen + k);
  unsigned char* taken = reinterpret_cast<unsigned char*>(picked + k);  // [E] experts, then [nGroup] kept
  unsigned char* kept = taken + E;
  for (int e = lane; e < E; e += 32) taken[e] = 0;
  __syncwarp();

  if (rp.sparsemixer) {
    // Two rounds; round 2 excludes round 1's expert. Each round: m = the best eligible logit, the eligible logits
    // with (m - l) / max(|l|, m) > 2 eps masked (a NaN ratio keeps l), weight = softmax of the rest at m's expert.
    const float threshold = 2.f * rp.sparsemixerEpsilon;
    for (int j = 0; j < 2; j++) {
      const Cand best = warpArgBest(E, lane, [&](int e) { return row[e]; }, [&](int e) { return taken[e] != 0; });
      const float m = best.v;
      float s = 0.f;
      for (int e = lane; e < E; e += 32) {
        if (taken[e]) continue;
        const float l = row[e];
        if (!((m - l) / fmaxf(fabsf(l), m) > threshold)) s += expf(l - m);
      }
      s = warpSum(s);
      if (lane == 0) {
        taken[best.i] = 1;
        ids[t * k + j] = best.i;
        chosen[j] = 1.f / s;
      }
      __syncwarp();
    }
  } else {
    float m = -INFINITY;
    for (int e = lane; e < E; e += 32) m = fmaxf(m, row[e]);
    m = warpMax(m);
    float s = 0.f;
    for (int e = lane; e < E; e += 32) {
      const float v = expf(row[e] - m);
      p[e] = v;
      s += v;
    }
    s = warpSum(s);
    for (int e = lane; e < E; e += 32) p[e] = p[e] / s;
    __syncwarp();
    if (rp.nGroup > 1) {
      // group_limited_greedy: groups ranked by their best p (NaN ignored); experts of dropped groups score 0
      // (not -inf: with k above the kept experts they are chosen, at weight 0).
      const int perGroup = E / rp.nGroup;
      for (int g = lane; g < rp.nGroup; g += 32) {
        float gm = -INFINITY;
        for (int e = g * perGroup; e < (g + 1) * perGroup; e++) gm = p[e] > gm ? p[e] : gm;
        groupScore[g] = gm;
        kept[g] = 0;
      }
      __syncwarp();
      keepBestGroups(groupScore, rp.nGroup, rp.topkGroup, kept, lane);
      for (int e = lane; e < E; e += 32) {
        if (!kept[e / perGroup]) p[e] = 0.f;
      }
      __syncwarp();
    }
    auto key = [&](int e) { return bias ? p[e] + bias[e] : p[e]; };
    if (!topkInRegisters(E, k, lane, key, [](int) { return true; }, picked)) {
      for (int j = 0; j < k; j++) {
        const Cand best = warpArgBest(E, lane, key, [&](int e) { return taken[e] != 0; });
        if (lane == 0) {
          taken[best.i] = 1;
          picked[j] = best.i;
        }
        __syncwarp();
      }
    }
    __syncwarp();
    for (int j = lane; j < k; j += 32) {
      const int e = picked[j];
      ids[t * k + j] = e;
      chosen[j] = p[e];
    }
    __syncwarp();
  }
  float scale = rp.routedScalingFactor;
  if (lane == 0 && rp.renormalize) {
    float chosenSum = 0.f;
    for (int j = 0; j < k; j++) chosenSum += chosen[j];  // in slot order
    // ERNIE's clamp: a bias may pick experts whose p underflowed to 0 (0/0). A comparison, not fmaxf, so that a
    // NaN sum stays NaN (sparsemixer: one round's NaN weight makes the other's NaN too, as on every backend).
    const float sum = chosenSum + rp.renormalizeEpsilon;
    scale = sum < 1e-12f ? 1e-12f : sum;
  }
  if (rp.renormalize) {
    const float denom = __shfl_sync(0xffffffffu, scale, 0);
    for (int j = lane; j < k; j += 32) weights[t * k + j] = chosen[j] / denom * rp.routedScalingFactor;
  } else {
    for (int j = lane; j < k; j += 32) weights[t * k + j] = chosen[j] * scale;
  }
  if (lane == 0 && sharedGate) sharedGate[t] = sigmoidf(row[E]);
}

// Top two of scores b[begin, end) across the warp (a total order: the same pair as a serial scan).
__device__ __forceinline__ void warpTopTwo(const float* b, int begin, int end, int lane, Cand& first, Cand& second) {
  first = Cand{0.f, -1};
  second = Cand{0.f, -1};
  for (int e = begin + lane; e < end; e += 32) {
    const Cand c{b[e], e};
    if (better(c, first)) {
      second = first;
      first = c;
    } else if (better(c, second)) {
      second = c;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Cand f{__shfl_xor_sync(0xffffffffu, first.v, o), __shfl_xor_sync(0xffffffffu, first.i, o)};
    const Cand s{__shfl_xor_sync(0xffffffffu, second.v, o), __shfl_xor_sync(0xffffffffu, second.i, o)};
    if (better(f, first)) {
      second = better(first, s) ? first : s;
      first = f;
    } else if (better(f, second)) {
      second = f;
    }
  }
}

// noaux_tc routing of token t (section 2). scores may be null. ws: the warp's routeScratchBytes(E, rp).
__device__ __forceinline__ void noauxRouteToken(const float* row, int t, int E, const float* __restrict__ bias,
                                                const RoutingParams& rp, float* __restrict__ scores,
                                                int* __restrict__ ids, float* __restrict__ weights,
                                                float* __restrict__ sharedGate, unsigned char* ws, int lane) {
  const int nGroup = rp.nGroup, topkGroup = rp.topkGroup, k = rp.k;
  float* b = reinterpret_cast<float*>(ws);  // [E] biased scores, [nGroup] group scores, [k] chosen weights
  float* groupScore = b + E;
  float* chosen = groupScore + nGroup;
  int* picked = reinterpret_cast<int*>(chosen + k);
  unsigned char* taken = reinterpret_cast<unsigned char*>(picked + k);  // [E] experts, then [nGroup] kept
  unsigned char* kept = taken + E;
  const int perGroup = E / nGroup;

  for (int e = lane; e < E; e += 32) {
    const float sc = sigmoidf(row[e]);
    if (scores) scores[static_cast<long long>(t) * E + e] = sc;
    b[e] = sc + (bias ? bias[e] : 0.f);
    taken[e] = 0;
  }
  __syncwarp();
  bool anyFinite = false;
  if (perGroup >= 32) {
    // Wide groups (one group of 128 for Llama-4 / LFM2 / minimax-style sigmoid routing): the warp finds each
    // group's top two together instead of one lane scanning the group (0.035 ms at T = 1 for one group of 128).
    for (int g = 0; g < nGroup; g++) {
      Cand first, second;
      warpTopTwo(b, g * perGroup, (g + 1) * perGroup, lane, first, second);
      const float gs = first.v + second.v;
      if (lane == 0) {
        groupScore[g] = gs;
        kept[g] = 0;
      }
      anyFinite |= isfinite(gs);
    }
  } else {
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
  }
  anyFinite = __any_sync(0xffffffffu, anyFinite);
  __syncwarp();

  if (!anyFinite) {  // FastDeploy's fallback: the first k experts, equal weights
    for (int j = lane; j < k; j += 32) {
      ids[t * k + j] = j;
      weights[t * k + j] = 1.f / k;
    }
  } else {
    keepBestGroups(groupScore, nGroup, topkGroup, kept, lane);
    // Experts of dropped groups never compete, not even against a NaN of a kept group.
    if (!topkInRegisters(E, k, lane, [&](int e) { return b[e]; }, [&](int e) { return kept[e / perGroup] != 0; },
                         picked)) {
      for (int j = 0; j < k; j++) {
        const Cand best = warpArgBest(E, lane, [&](int e) { return b[e]; },
                                      [&](int e) { return taken[e] != 0 || !kept[e / perGroup]; });
        if (lane == 0) {
          taken[best.i] = 1;
          picked[j] = best.i;
        }
        __syncwarp();
      }
    }
    __syncwarp();
    for (int j = lane; j < k; j += 32) {
      const int e = picked[j];
      ids[t * k + j] = e;
      chosen[j] = sigmoidf(row[e]);
    }
    __syncwarp();
    float chosenSum = 0.f;
    if (lane == 0) {
      for (int j = 0; j < k; j++) chosenSum += chosen[j];  // in slot order
    }
    const float denom = __shfl_sync(0xffffffffu, rp.renormalize ? chosenSum + rp.renormalizeEpsilon : 1.f, 0);
    for (int j = lane; j < k; j += 32) weights[t * k + j] = chosen[j] / denom * rp.routedScalingFactor;
  }
  if (lane == 0 && sharedGate) sharedGate[t] = sigmoidf(row[E]);
}

}  // namespace routing
}  // namespace moe
