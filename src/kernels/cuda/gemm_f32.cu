// float32 (FMA, no TF32) instantiations of the grouped GEMM, and the element-type dispatch.
#include "grouped_gemm_launch.cuh"
#include "moe_kernels.h"

namespace moe {

void launchGroupedGemmBf16(const GemmProblem& p, cudaStream_t stream);
void launchGroupedGemmF16(const GemmProblem& p, cudaStream_t stream);
bool combineSupportedBf16(const GemmProblem& p);
bool combineSupportedF16(const GemmProblem& p);

namespace gemm {

template <int BM, int BN, int BK, int TM, Epilogue EPI, bool VEC>
void launchFmaConfig(const GemmProblem& p, cudaStream_t stream) {
  const dim3 grid = gridFor(p, BM, BN);
  if (grid.x == 0 || grid.y == 0) return;
  launchKernel("fmaGemmKernel", fmaGemmKernel<BM, BN, BK, TM, EPI, VEC>, grid, (BN / 8) * (BM / TM), 0, stream, p);
}

// Dense float32 GEMM with a few rows (the router at decode): one block per output column, its 8 warps each
// stream an interleaved eighth of that column's weights with independent float4 loads, partial sums reduced in
// a fixed order. The tiled kernel would leave most of the GPU idle here, and one warp per column is latency-bound.
constexpr int kFewRowsWarps = 8;
template <int MAXM>
__global__ void __launch_bounds__(kFewRowsWarps * 32) denseFewRowsKernel(const GemmProblem p) {
  awaitPredecessor();
  __shared__ float partial[kFewRowsWarps][MAXM];
  const int n = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* A = static_cast<const float*>(p.A);
  const float* b = static_cast<const float*>(p.B) + static_cast<long long>(n) * p.K;
  float acc[MAXM];
#pragma unroll
  for (int m = 0; m < MAXM; m++) acc[m] = 0.f;
#pragma unroll 2
  for (int k = (warp * 32 + lane) * 4; k < p.K; k += kFewRowsWarps * 128) {
    const float4 bv = *reinterpret_cast<const float4*>(b + k);
#pragma unroll
    for (int m = 0; m < MAXM; m++) {
      if (m < p.M) {
        const float4 av = *reinterpret_cast<const float4*>(A + static_cast<long long>(m) * p.lda + k);
        acc[m] = fmaf(av.x, bv.x, fmaf(av.y, bv.y, fmaf(av.z, bv.z, fmaf(av.w, bv.w, acc[m]))));
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MAXM; m++) {
    float v = acc[m];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp][m] = v;
  }
  __syncthreads();
  if (p.aCopy != nullptr) {
    // This block's share of the A conversion (A is dense here: lda == K).
    const long long total = static_cast<long long>(p.M) * p.K;
    for (long long i = static_cast<long long>(n) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
      if (p.aCopyElem == DType::kBFloat16) static_cast<__nv_bfloat16*>(p.aCopy)[i] = __float2bfloat16_rn(A[i]);
      else static_cast<__half*>(p.aCopy)[i] = __float2half_rn(A[i]);
    }
  }
  for (int m = threadIdx.x; m < p.M && m < MAXM; m += blockDim.x) {
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kFewRowsWarps; w++) v += partial[w][m];
    float* C = static_cast<float*>(p.C) + static_cast<long long>(m) * p.ldc;
    C[n] = v + (p.bias ? p.bias[n] : 0.f);
  }
}

template <Epilogue EPI>
void launchFmaEpi(const GemmProblem& p, bool vec, cudaStream_t stream) {
  if (!vec) {
    launchFmaConfig<16, 64, 32, 1, EPI, false>(p, stream);
    return;
  }
  const int hint = p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M;
  if (hint <= 16) launchFmaConfig<16, 64, 32, 1, EPI, true>(p, stream);
  else if (hint <= 64) launchFmaConfig<64, 128, 16, 4, EPI, true>(p, stream);
  else launchFmaConfig<128, 128, 16, 8, EPI, true>(p, stream);
}

__global__ void splitKReduceKernel(const float* __restrict__ partial, int kSplit, long long slab, int N,
                                   const float* __restrict__ bias, float* __restrict__ out) {
  awaitPredecessor();
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < slab;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < kSplit; z++) v += partial[z * slab + i];
    out[i] = v + (bias ? bias[i % N] : 0.f);
  }
}

}  // namespace gemm

void launchSplitKReduce(const float* partial, int kSplit, int M, int N, const float* bias, float* out,
                        cudaStream_t stream) {
  const long long slab = static_cast<long long>(M) * N;
  if (slab == 0) return;
  launchKernel("splitKReduceKernel", gemm::splitKReduceKernel,
               static_cast<int>(std::min<long long>((slab + 255) / 256, 4096)), 256, 0, stream, partial, kSplit, slab,
               N, bias, out);
}

bool combineInGemmSupported(const GemmProblem& p) {
  if (p.elem == DType::kBFloat16) return combineSupportedBf16(p);
  if (p.elem == DType::kFloat16) return combineSupportedF16(p);
  return false;
}

void launchGroupedGemm(const GemmProblem& p, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0) return;
  if (p.epilogue == Epilogue::kCombine && (p.elem == DType::kFloat32 || p.out != DType::kFloat32)) {
    throw std::invalid_argument("grouped GEMM: kCombine is for half-precision operands writing float32");
  }
  if (p.epilogue == Epilogue::kSwiglu && p.group != swigluGroup(p.elem)) {
    throw std::invalid_argument("grouped GEMM: SwiGLU interleave width does not match the element type");
  }
  if (p.aCopy != nullptr && (p.elem != DType::kFloat32 || p.epilogue != Epilogue::kStore || p.seg.offsets != nullptr ||
                            p.lda != p.K || p.aCopyElem == DType::kFloat32)) {
    throw std::invalid_argument("grouped GEMM: aCopy is for dense float32 kStore with lda == K, to a half type");
  }
  if (p.elem == DType::kBFloat16) return launchGroupedGemmBf16(p, stream);
  if (p.elem == DType::kFloat16) return launchGroupedGemmF16(p, stream);
  if (p.out != DType::kFloat32) throw std::invalid_argument("grouped GEMM: float32 operands write float32");
  const bool vec = p.K % 4 == 0 && p.lda % 4 == 0 && gemm::aligned16(p.A) && gemm::aligned16(p.B);
  if (p.kSplit > 1 && (p.epilogue != Epilogue::kStore || p.seg.offsets != nullptr || p.bias != nullptr)) {
    throw std::invalid_argument("grouped GEMM: split-K is for dense float32 kStore without bias");
  }
  if (vec && p.kSplit <= 1 && p.seg.offsets == nullptr && p.M <= 32 && p.epilogue == Epilogue::kStore) {
    const int threads = gemm::kFewRowsWarps * 32;
    auto kernel = p.M <= 4 ? gemm::denseFewRowsKernel<4> : p.M <= 16 ? gemm::denseFewRowsKernel<16> : gemm::denseFewRowsKernel<32>;
    launchKernel("denseFewRowsKernel", kernel, p.N, threads, 0, stream, p);
    return;
  }
  if (p.aCopy != nullptr) {
    GemmProblem q = p;
    q.aCopy = nullptr;
    launchGroupedGemm(q, stream);
    launchConvert(static_cast<const float*>(p.A), p.aCopy, p.aCopyElem, static_cast<long long>(p.M) * p.K, stream);
    return;
  }
  switch (p.epilogue) {
    case Epilogue::kStore: gemm::launchFmaEpi<Epilogue::kStore>(p, vec, stream); break;
    case Epilogue::kSwiglu: gemm::launchFmaEpi<Epilogue::kSwiglu>(p, vec, stream); break;
    case Epilogue::kAccumulate: gemm::launchFmaEpi<Epilogue::kAccumulate>(p, vec, stream); break;
    case Epilogue::kCombine: break;  // refused above
  }
}

}  // namespace moe
