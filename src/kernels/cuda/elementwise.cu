// Memory-bound kernels: SwiGLU (plain or clamped) x scale, the weighted combine, dtype conversion, and the one-time weight packing.
#include "combine_device.cuh"
#include "moe_kernels.h"

namespace moe {
namespace {

inline int gridFor(long long n, int threads) {
  return static_cast<int>(std::max<long long>(1, std::min<long long>((n + threads - 1) / threads, 65535LL * 8)));
}

__global__ void swigluKernel(const float* __restrict__ x, int R, int I, const float* __restrict__ scale,
                             SwigluActivation act, float* __restrict__ out) {
  awaitPredecessor();
  const long long total = static_cast<long long>(R) * I;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = idx / I, i = idx % I;
    const float* row = x + r * 2 * I;
    out[idx] = swigluOf(row[i], row[I + i], act) * (scale ? scale[r] : 1.f);
  }
}

// One thread per (token, column): combineElement.
__global__ void combineKernel(const float* __restrict__ y, int R, int D, const int* __restrict__ rowMap,
                              const float* __restrict__ weights, const int* __restrict__ ids, int T, int k, int E,
                              const float* __restrict__ bias, bool weightsApplied, const float* __restrict__ identityX,
                              float* __restrict__ out) {
  awaitPredecessor();
  const long long total = static_cast<long long>(T) * D;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(idx / D), d = static_cast<int>(idx % D);
    out[idx] = combineElement<false>(y, R, D, rowMap, weights, ids, t, d, k, E, bias, weightsApplied, identityX);
  }
}

// D % 4 == 0 and k <= KMAX: one thread per (token, 4 columns). The slots' rows and weights are read once per 4
// columns and the k row loads are issued together (the scalar kernel's dependent loop kept one in flight: 58% of the
// H200's copy bandwidth at T = 4096); y is read once, so its loads stream past L1 and L2 (evict-first). Each column
// is the same slot-order float32 sum as combineElement.
template <int KMAX>
__global__ void combineVec4Kernel(const float* __restrict__ y, int R, int D, const int* __restrict__ rowMap,
                                  const float* __restrict__ weights, const int* __restrict__ ids, int T, int k, int E,
                                  const float* __restrict__ bias, bool weightsApplied,
                                  const float* __restrict__ identityX, float* __restrict__ out) {
  awaitPredecessor();
  const int D4 = D / 4;
  const long long total = static_cast<long long>(T) * D4;
  for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(idx / D4), d = static_cast<int>(idx % D4) * 4;
    int row[KMAX];
    float w[KMAX];
    float4 v[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
      row[j] = j < k ? rowMap[t * k + j] : -2;
      w[j] = j < k ? weights[t * k + j] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
      if (row[j] >= 0 && row[j] < R) v[j] = __ldcs(reinterpret_cast<const float4*>(y + static_cast<long long>(row[j]) * D + d));
      else v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
      if (j >= k) break;
      if (row[j] >= 0 && row[j] < R) {
        acc.x = combineSlot(acc.x, v[j].x, w[j], weightsApplied);
        acc.y = combineSlot(acc.y, v[j].y, w[j], weightsApplied);
        acc.z = combineSlot(acc.z, v[j].z, w[j], weightsApplied);
        acc.w = combineSlot(acc.w, v[j].w, w[j], weightsApplied);
        if (bias) {
          const int e = ids[t * k + j];
          if (e >= 0 && e < E) {
            const float4 b = *reinterpret_cast<const float4*>(bias + static_cast<long long>(e) * D + d);
            acc.x += w[j] * b.x;
            acc.y += w[j] * b.y;
            acc.z += w[j] * b.z;
            acc.w += w[j] * b.w;
          }
        }
      } else if (identityX && row[j] == -1) {
        const float4 xv = *reinterpret_cast<const float4*>(identityX + static_cast<long long>(t) * D + d);
        acc.x += w[j] * xv.x;
        acc.y += w[j] * xv.y;
        acc.z += w[j] * xv.z;
        acc.w += w[j] * xv.w;
      }
    }
    *reinterpret_cast<float4*>(out + static_cast<long long>(t) * D + d) = acc;
  }
}

template <typename Elem>
__global__ void convertKernel(const float* __restrict__ in, Elem* __restrict__ out, long long n) {
  awaitPredecessor();
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    out[i] = ElemTraits<Elem>::fromFloat(in[i]);
  }
}

// Transpose through a 32x32 shared tile so both the [K][N] reads and the [Nout][Kout] writes are coalesced.
template <typename Elem>
__global__ void packKernel(const float* __restrict__ src, int K, int N, Elem* __restrict__ dst, int Nout, int Kout,
                           int group) {
  __shared__ float tile[32][33];
  const int n0 = blockIdx.x * 32, k0 = blockIdx.y * 32;  // rows on x: Nout can pass grid.y's 65535 limit
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int k = k0 + dy, n = n0 + threadIdx.x;  // n: destination row
    const int col = n < Nout ? packColumn(n, N, group) : -1;
    tile[dy][threadIdx.x] = (k < K && col >= 0) ? src[static_cast<long long>(k) * N + col] : 0.f;
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int n = n0 + dy, k = k0 + threadIdx.x;
    if (n < Nout && k < Kout) dst[static_cast<long long>(n) * Kout + k] = ElemTraits<Elem>::fromFloat(tile[threadIdx.x][dy]);
  }
}

}  // namespace

void launchSwiglu(const float* x, int R, int I, const float* scale, const SwigluActivation& act, float* out,
                  cudaStream_t stream) {
  const long long n = static_cast<long long>(R) * I;
  if (n == 0) return;
  launchKernel("swigluKernel", swigluKernel, gridFor(n, 256), 256, 0, stream, x, R, I, scale, act, out);
}

void launchCombine(const float* y, int R, int D, const int* rowMap, const float* weights, const int* ids, int T,
                   int k, int E, const float* bias, bool weightsApplied, const float* identityX, float* out,
                   cudaStream_t stream) {
  const long long n = static_cast<long long>(T) * D;
  if (n == 0) return;
  const bool aligned = (reinterpret_cast<uintptr_t>(y) | reinterpret_cast<uintptr_t>(out) |
                        reinterpret_cast<uintptr_t>(bias) | reinterpret_cast<uintptr_t>(identityX)) % 16 == 0;
  if (D % 4 == 0 && k <= 8 && aligned && !legacyPrefillKernels()) {
    launchKernel("combineVec4Kernel", combineVec4Kernel<8>, gridFor(n / 4, 256), 256, 0, stream, y, R, D, rowMap,
                 weights, ids, T, k, E, bias, weightsApplied, identityX, out);
    return;
  }
  launchKernel("combineKernel", combineKernel, gridFor(n, 256), 256, 0, stream, y, R, D, rowMap, weights, ids, T, k,
               E, bias, weightsApplied, identityX, out);
}

void launchConvert(const float* in, void* out, DType elem, long long n, cudaStream_t stream) {
  if (n == 0) return;
  if (elem == DType::kFloat32) {
    MOE_CUDA(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (elem == DType::kBFloat16) {
    launchKernel("convertKernel", convertKernel<__nv_bfloat16>, gridFor(n, 256), 256, 0, stream, in, static_cast<__nv_bfloat16*>(out), n);
  } else {
    launchKernel("convertKernel", convertKernel<__half>, gridFor(n, 256), 256, 0, stream, in, static_cast<__half*>(out), n);
  }
}

void launchDeviceCopy(const float* in, float* out, long long n, cudaStream_t stream) {
  if (n == 0) return;
  launchKernel("convertKernel", convertKernel<float>, gridFor(n, 256), 256, 0, stream, in, out, n);
}

void launchPackWeights(const float* src, int K, int N, void* dst, DType elem, int Nout, int Kout, int group,
                       cudaStream_t stream) {
  if (Nout == 0 || Kout == 0) return;
  if (ceilDiv(Kout, 32) > 65535) throw std::invalid_argument("weight packing: K = " + std::to_string(Kout) + " is too large");
  const dim3 grid(ceilDiv(Nout, 32), ceilDiv(Kout, 32)), block(32, 8);
  if (elem == DType::kFloat32) packKernel<<<grid, block, 0, stream>>>(src, K, N, static_cast<float*>(dst), Nout, Kout, group);
  else if (elem == DType::kBFloat16) packKernel<<<grid, block, 0, stream>>>(src, K, N, static_cast<__nv_bfloat16*>(dst), Nout, Kout, group);
  else packKernel<<<grid, block, 0, stream>>>(src, K, N, static_cast<__half*>(dst), Nout, Kout, group);
  MOE_LAUNCHED("packKernel");
}

bool legacyPrefillKernels() {
  const char* v = std::getenv("TFJS_MOE_CUDA_PREFILL_LEGACY");
  return v != nullptr && v[0] == '1';
}

}  // namespace moe
