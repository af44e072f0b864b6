// bfloat16 tensor-core instantiations of the grouped GEMM.
#include "grouped_gemm_launch.cuh"

namespace moe {
void launchGroupedGemmBf16(const GemmProblem& p, cudaStream_t stream) { gemm::launchMmaGemm<__nv_bfloat16>(p, stream); }
bool combineSupportedBf16(const GemmProblem& p) { return gemm::combineSupported<__nv_bfloat16>(p); }
}  // namespace moe
