// The decode front of the layer in fewer kernels. At T = 1 the router GEMM, routing and permute kernels are
// latency-bound work, each launch waiting for the previous one (BENCHMARKS.md, session 2: router 4 us, routing 9 us,
// permute 4 us under ncu). decodeRouteKernel: every block computes one router column as the few-rows GEMM does;
// the last block to finish (a counter in global memory) reads all the logits back from L2, routes the T tokens (one
// warp per token, the routing kernels' own per-token code) and runs the one-block permute.
// decodeRoutePermuteKernel: that tail alone, one block after the separate router GEMM.
#include "gemm_few_rows.cuh"
#include "permute_device.cuh"
#include "routing_device.cuh"

namespace moe {
namespace {

constexpr int kRouteThreads = gemm::kFewRowsWarps * 32;
static_assert(kRouteThreads == permute::kScanThreads, "the permute tail needs the scan's block size");
constexpr int kRouteMaxTokens = 16;
// Static shared memory of the kernel (few-rows partials, the permute's ids/counts/offsets and scan), so the
// dynamic part (logits + routing scratch) is kept within the default 48 KB.
constexpr size_t kRouteStaticBytes = sizeof(float) * gemm::kFewRowsWarps * kRouteMaxTokens +
                                     sizeof(int) * (permute::kSmallPairs + 2 * permute::kSmallExperts + 1 +
                                                    (kTileClasses + 1) * permute::kScanThreads);

size_t routeWarpBytes(int routed, const RoutingParams& rp) { return (routing::routeScratchBytes(routed, rp) + 15) & ~size_t(15); }
size_t routeLogitBytes(int T, int ld) { return (static_cast<size_t>(T) * ld * sizeof(float) + 15) & ~size_t(15); }

// The T tokens routed (one warp per token, the routing kernels' own per-token code) and the one-block permute of
// their pairs: the tail of both decode front kernels below. logits [T][ld] (shared or global memory); scratch:
// kFewRowsWarps routing scratches of warpBytes.
__device__ __forceinline__ void routeAndPermuteBlock(const float* logits, int T, int ld, const DecodeRouteArgs& a,
                                                     unsigned char* scratch, size_t warpBytes) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* ws = scratch + warp * warpBytes;
  for (int t = warp; t < T; t += gemm::kFewRowsWarps) {
    const float* row = logits + static_cast<long long>(t) * ld;
    if (a.noaux) {
      routing::noauxRouteToken(row, t, a.routed, a.corr, a.rp, nullptr, a.ids, a.weights, a.sharedGate, ws, lane);
    } else {
      routing::softmaxRouteToken(row, t, a.routed, a.corr, a.rp, a.ids, a.weights, a.sharedGate, ws, lane);
    }
    __syncwarp();
  }
  __syncthreads();  // the ids in global memory, visible to the whole block
  permute::zeroFillBlock(a.perm.zeroOut, a.perm.zeroFloats);
  permute::permuteSmallBlock(a.ids, T * a.rp.k, a.numExperts, 1, a.R, a.perm.tokensPerExpert, a.perm.offsets,
                             a.perm.tilePrefix, a.perm.rowToPair, a.perm.rowMap);
}

template <int MAXM>
__global__ void __launch_bounds__(kRouteThreads) decodeRouteKernel(const GemmProblem gate, DecodeRouteArgs a,
                                                                   size_t logitBytes, size_t warpBytes) {
  awaitPredecessor();
  gemm::denseFewRowsColumn<MAXM>(gate, blockIdx.x, gridDim.x);
  __shared__ int lastBlock;
  __threadfence();  // this block's logits (and x's conversion) before its count
  __syncthreads();
  if (threadIdx.x == 0) {
    lastBlock = atomicAdd(a.counter, 1) == static_cast<int>(gridDim.x) - 1;
    if (lastBlock) *a.counter = 0;  // every block has counted: ready for the next launch
  }
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();

  extern __shared__ __align__(16) unsigned char smem[];
  const int T = gate.M, ld = gate.ldc;
  float* logits = reinterpret_cast<float*>(smem);
  const float* C = static_cast<const float*>(gate.C);
  for (int i = threadIdx.x; i < T * ld; i += blockDim.x) logits[i] = __ldcg(C + i);
  __syncthreads();
  routeAndPermuteBlock(logits, T, ld, a, smem + logitBytes, warpBytes);
}

// Routing + permute as one block after the router GEMM (TFJS_MOE_CUDA_DECODE_FRONT=route2): one launch fewer than
// the routing and permute kernels, without the fused kernel's serial handoff (its last block's counter, fence and
// re-read of the logits) in the router's grid.
__global__ void __launch_bounds__(kRouteThreads) decodeRoutePermuteKernel(const float* __restrict__ logits, int T, int ld,
                                                                          DecodeRouteArgs a, size_t warpBytes) {
  awaitPredecessor();
  extern __shared__ __align__(16) unsigned char smem[];
  routeAndPermuteBlock(logits, T, ld, a, smem, warpBytes);
}

}  // namespace

bool decodeRouteFits(const GemmProblem& gate, const DecodeRouteArgs& a) {
  const int T = gate.M;
  if (T < 1 || T > kRouteMaxTokens || gate.kSplit > 1 || gate.seg.offsets != nullptr || gate.elem != DType::kFloat32 ||
      gate.epilogue != Epilogue::kStore || gate.N != gate.ldc) {
    return false;
  }
  const bool vec = gate.K % 4 == 0 && gate.lda % 4 == 0 && (reinterpret_cast<uintptr_t>(gate.A) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(gate.B) & 15) == 0;
  if (!vec || T * a.rp.k > permute::kSmallPairs || a.numExperts > permute::kSmallExperts) return false;
  const size_t dyn = routeLogitBytes(T, gate.ldc) + gemm::kFewRowsWarps * routeWarpBytes(a.routed, a.rp);
  return dyn + kRouteStaticBytes <= 48 * 1024;
}

void launchDecodeRoute(const GemmProblem& gate, const DecodeRouteArgs& a, cudaStream_t stream) {
  if (!decodeRouteFits(gate, a)) throw std::invalid_argument("decode route: the problem does not fit the fused kernel");
  const size_t logitBytes = routeLogitBytes(gate.M, gate.ldc), warpBytes = routeWarpBytes(a.routed, a.rp);
  const size_t dyn = logitBytes + gemm::kFewRowsWarps * warpBytes;
  auto kernel = gate.M <= 4 ? decodeRouteKernel<4> : decodeRouteKernel<16>;
  launchKernel("decodeRouteKernel", kernel, gate.N, kRouteThreads, dyn, stream, gate, a, logitBytes, warpBytes);
}

bool decodeRoutePermuteFits(int T, const DecodeRouteArgs& a) {
  if (T < 1 || T > kRouteMaxTokens || T * a.rp.k > permute::kSmallPairs || a.numExperts > permute::kSmallExperts) return false;
  return gemm::kFewRowsWarps * routeWarpBytes(a.routed, a.rp) + kRouteStaticBytes <= 48 * 1024;
}

void launchDecodeRoutePermute(const float* logits, int T, int ld, const DecodeRouteArgs& a, cudaStream_t stream) {
  if (!decodeRoutePermuteFits(T, a)) throw std::invalid_argument("decode route + permute: the problem does not fit one block");
  const size_t warpBytes = routeWarpBytes(a.routed, a.rp);
  launchKernel("decodeRoutePermuteKernel", decodeRoutePermuteKernel, 1, kRouteThreads, gemm::kFewRowsWarps * warpBytes,
               stream, logits, T, ld, a, warpBytes);
}

}  // namespace moe
