// float32 (FMA, no TF32) instantiations of the grouped GEMM, and the element-type dispatch.
#include <cstring>

#include "gemm_dense_f32.cuh"
#include "gemm_few_rows.cuh"
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

template <int MAXM>
__global__ void __launch_bounds__(kFewRowsWarps * 32) denseFewRowsKernel(const GemmProblem p) {
  awaitPredecessor();
  denseFewRowsColumn<MAXM>(p, blockIdx.x, gridDim.x);
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
    // Eight slabs' loads in flight at a time (up to 64 slices at T = 256), summed in slice order.
    float v = 0.f;
    int z = 0;
    for (; z + 8 <= kSplit; z += 8) {
      float part[8];
#pragma unroll
      for (int j = 0; j < 8; j++) part[j] = partial[(z + j) * slab + i];
#pragma unroll
      for (int j = 0; j < 8; j++) v += part[j];
    }
    for (; z < kSplit; z++) v += partial[z * slab + i];
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

static bool& exactDenseF32() {
  static thread_local bool exact = false;
  return exact;
}
ExactDenseF32Scope::ExactDenseF32Scope(bool on) : previous(exactDenseF32()) { exactDenseF32() = previous || on; }
ExactDenseF32Scope::~ExactDenseF32Scope() { exactDenseF32() = previous; }

DenseF32Core denseF32Core() {
  if (exactDenseF32()) return DenseF32Core::kFma;
  const char* v = std::getenv("TFJS_MOE_CUDA_DENSE_F32");
  if (v != nullptr && std::strcmp(v, "fma") == 0) return DenseF32Core::kFma;
  if (v != nullptr && std::strcmp(v, "tf32x3-regs") == 0) return DenseF32Core::kTf32x3Regs;
  return DenseF32Core::kTf32x3;
}

bool combineInGemmSupported(const GemmProblem& p) {
  if (p.elem == DType::kBFloat16) return combineSupportedBf16(p);
  if (p.elem == DType::kFloat16) return combineSupportedF16(p);
  return false;
}

void launchGroupedGemm(const GemmProblem& p, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0) return;
  // combineAdd: the half-precision tiles only (the mma.sync decode tiles; the wgmma GEMM takes it through
  // launchGroupedGemmSm90).
  if (p.combineAdd != nullptr && (p.elem == DType::kFloat32 || p.epilogue != Epilogue::kStore || p.out != DType::kFloat32 ||
                                  p.seg.offsets == nullptr || p.rowToPair == nullptr || p.pairWeight == nullptr ||
                                  p.topK < 1 || p.combineOut != nullptr || p.kSplit > 1)) {
    throw std::invalid_argument("grouped GEMM: combineAdd is for segmented half-precision float32 kStore with the pair maps");
  }
  if (p.combineOut != nullptr) {
    if (p.epilogue != Epilogue::kStore || p.out != DType::kFloat32 || p.seg.offsets == nullptr || p.N != p.ldc ||
        p.tileCounters == nullptr || p.pairRow == nullptr || p.pairWeight == nullptr || p.pairExpert == nullptr ||
        p.topK < 1 || p.kSplit > 1) {
      throw std::invalid_argument("grouped GEMM: combineOut is for segmented float32 kStore with N == ldc and the pair maps");
    }
    if (p.elem == DType::kFloat32) {  // the FMA core has no combine tail
      GemmProblem q = p;
      q.combineOut = nullptr;
      launchGroupedGemm(q, stream);
      gemm::combineAfter(p, stream);
      return;
    }
  }
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
  if (vec && p.seg.offsets == nullptr && p.aRowIndex == nullptr && p.epilogue == Epilogue::kStore &&
      p.M >= kDenseF32MinRows && !legacyPrefillKernels()) {
    const dim3 grid(ceilDiv(p.M, gemm::kDenseF32Rows), ceilDiv(p.N, gemm::kDenseF32Cols), p.kSplit > 1 ? p.kSplit : 1);
    const DenseF32Core core = denseF32Core();
    if (core == DenseF32Core::kTf32x3) {
      static const bool raised = [] {
        MOE_CUDA(cudaFuncSetAttribute(gemm::denseF32Tf32x3PipeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      gemm::kDenseF32PipeSmem));
        return true;
      }();
      (void)raised;
      launchKernel("denseF32Tf32x3PipeKernel", gemm::denseF32Tf32x3PipeKernel, grid, gemm::kDenseF32Threads,
                   gemm::kDenseF32PipeSmem, stream, p);
    } else if (core == DenseF32Core::kTf32x3Regs) {
      launchKernel("denseF32Tf32x3Kernel", gemm::denseF32Tf32x3Kernel, grid, gemm::kDenseF32Threads, 0, stream, p);
    } else {
      launchKernel("denseF32GemmKernel", gemm::denseF32GemmKernel, grid, gemm::kDenseF32Threads, 0, stream, p);
    }
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
