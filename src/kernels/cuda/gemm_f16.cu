// float16 tensor-core instantiations of the grouped GEMM.
#include "grouped_gemm_launch.cuh"

namespace moe {
void launchGroupedGemmF16(const GemmProblem& p, cudaStream_t stream) { gemm::launchMmaGemm<__half>(p, stream); }
bool combineSupportedF16(const GemmProblem& p) { return gemm::combineSupported<__half>(p); }
}  // namespace moe
