// Shared by every .cu file of the addon: error checking that turns CUDA failures into C++ exceptions (the
// N-API glue turns those into JS Errors, so a CUDA failure never crashes the process), element types, and
// the small device helpers the kernels use.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

namespace moe {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void checkCuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) {
    // Clear the recorded error too: a non-sticky failure (e.g. cudaMalloc out of memory) must not resurface at
    // the next launch check. Sticky errors (a faulted context) stay and are reported again, as they should be.
    (void)cudaGetLastError();
    throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status) + " (" +
                    cudaGetErrorName(status) + ") at " + file + ":" + std::to_string(line));
  }
}
#define MOE_CUDA(call) ::moe::checkCuda((call), #call, __FILE__, __LINE__)
// A launch reports configuration errors at once; faults inside the kernel show up at the next sync.
#define MOE_LAUNCHED(name) ::moe::checkCuda(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

inline int dtypeBytes(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Segment bookkeeping that the grouped GEMM reads on the device. Tiles of a segment start at the segment's
// first row; tilePrefix[b][e] counts the row tiles of height (16 << b) before expert e, so a block finds its
// expert by a binary search and no host round trip is needed to size the grid.
constexpr int kTileClasses = 4;  // row-tile heights 16, 32, 64, 128
__host__ __device__ constexpr int tileClassOf(int bm) { return bm <= 16 ? 0 : bm <= 32 ? 1 : bm <= 64 ? 2 : 3; }

struct SegmentView {
  const int* offsets;     // [E+1]
  const int* tilePrefix;  // [kTileClasses][E+1]
  int numExperts;
};

// Upper bound on the row tiles of height bm over all segments of R rows in E experts: each non-empty
// segment adds at most one partial tile.
inline int maxRowTiles(int rows, int experts, int bm) {
  const int nonEmpty = rows < experts ? rows : experts;
  return (rows + bm - 1) / bm + nonEmpty;
}

template <typename T> struct ElemTraits;
template <> struct ElemTraits<float> {
  static __device__ __forceinline__ float toFloat(float v) { return v; }
  static __device__ __forceinline__ float fromFloat(float v) { return v; }
};
template <> struct ElemTraits<__nv_bfloat16> {
  static __device__ __forceinline__ float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 fromFloat(float v) { return __float2bfloat16_rn(v); }
};
template <> struct ElemTraits<__half> {
  static __device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half fromFloat(float v) { return __float2half_rn(v); }
};

__device__ __forceinline__ float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float siluf(float z) { return z / (1.0f + expf(-z)); }

// The expert activation of a gate/up pair (docs/semantics.md 5, 11.2): silu(g) * u, or gpt-oss's clamped form
// (u' + 1) * g' * sigmoid(alpha * g') with g' = min(g, limit), u' = clamp(u, -limit, limit). The clamps are
// written as comparisons so that a NaN stays NaN (fminf would turn it into the limit).
struct SwigluActivation {
  bool clamped = false;
  float alpha = 1.702f, limit = 7.f;
};
__host__ __device__ inline SwigluActivation plainSwiglu() { return SwigluActivation{}; }
__device__ __forceinline__ float swigluOf(float g, float u, const SwigluActivation& act) {
  if (!act.clamped) return siluf(g) * u;
  const float gc = g > act.limit ? act.limit : g;
  const float uc = u > act.limit ? act.limit : (u < -act.limit ? -act.limit : u);
  return (uc + 1.f) * gc / (1.f + expf(-act.alpha * gc));
}

inline int ceilDiv(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// ---- programmatic dependent launch (PDL, sm_90+) ----
// At decode sizes each kernel of the layer runs for a few microseconds, so the gap between two kernels (the next
// grid's launch and ramp-up) is a large share of the layer's time, even inside a CUDA graph. Launched with PDL,
// a kernel's blocks may be scheduled while its predecessor is still finishing; each such kernel therefore calls
// awaitPredecessor() before it touches global memory: griddepcontrol.wait returns once the predecessor grid has
// completed and its writes are visible (so the whole chain stays ordered, transitively). Early
// launch_dependents only lets the successor's blocks be placed sooner; it gives no visibility guarantee, the wait
// does. Both are no-ops for a kernel launched without the attribute, and compiled out below sm_90.
__device__ __forceinline__ void awaitPredecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Switches set by the addon's setTuning entry point from the tfjs flags MOE_CUDA_PDL and MOE_CUDA_GEMM_TILES
// (kernels/cuda/flags_cuda.ts), kept for A/B timing. `generation` counts changes: a layer drops the CUDA graphs
// it captured under other settings.
// The half-precision GEMM at decode sizes: 16-row tensor-core tiles 64 columns wide (default: faster on the H200
// than streaming, BENCHMARKS.md) or 32 wide (twice the blocks: A/B), or the weight-streaming kernel with 4 or 8
// columns per warp (which also reads int4 copies: W4A16).
// kMmaDeep / kMmaK128: the 16 x 64 tiles with 8 stages of 64, or 4 stages of 128, along K in flight (A/B); kMmaDeep
// also takes the int4 16 x 64 tiles from 128-deep to 256-deep K steps.
// kMma (default) picks the 16 x 64 pipeline by the grid's size; kMmaShallow forces 4 stages of 64 (int4: of 128).
// The mma choices have the decode down GEMM's blocks issue their tile lookup and first weight stages before waiting
// for the up_gate GEMM (GemmProblem.preloadB; H200 batch I: T = 1 0.0446 -> 0.0432 ms, T = 16 0.2533 -> 0.2500), but
// kMmaNoPreload (A/B) and kInt4Previous: kMma as in session 3, the latter also with the int4 16 x 64 bf16 tiles'
// previous fragment decode. kInt4Wide (A/B): kMma, but the int4 16-row tiles 128 columns wide with 8 warps (half the
// A re-reads per weight byte, more warps per SM; half the blocks, so not for one token).
enum class DecodeGemm : int {
  kMma = 0, kStream4 = 1, kStream8 = 2, kMma32 = 3, kMmaDeep = 4, kMmaK128 = 5, kMmaShallow = 6,
  kMmaNoPreload = 7, kInt4Previous = 8, kInt4Wide = 9
};
struct Tuning {
  bool pdl = true;             // programmatic dependent launch in the layer at decode sizes
  bool previousTiles = false;  // the GEMM tile choice from before the 128x256 prefill tiles (and the streaming GEMM)
  DecodeGemm decodeGemm = DecodeGemm::kMma;
  // Decode fusions in the layer (tfjs flag MOE_CUDA_FUSE, A/B): router GEMM + routing + permute in one kernel, and
  // the weighted combine in the down GEMM's last tile per column. Off by default: H200 batch E measured both slower
  // than the separate kernels under PDL (BENCHMARKS.md).
  bool fuseRoute = false;
  bool fuseCombine = false;
  // int4 expert copies read by the tensor-core tiles at decode and mid sizes (W4A16, tfjs flag MOE_CUDA_INT4_MMA);
  // off: those tiles read the dequantized copy.
  bool int4Mma = true;
  int generation = 0;
};
inline Tuning& tuning() {
  static Tuning t;
  return t;
}
// The decode tile choices that pick the 16 x 64 pipeline depth by the grid's size (kMma and its variants above).
inline bool autoDecodeDepth() {
  const DecodeGemm d = tuning().decodeGemm;
  return d == DecodeGemm::kMma || d == DecodeGemm::kMmaNoPreload || d == DecodeGemm::kInt4Previous ||
         d == DecodeGemm::kInt4Wide;
}
inline bool preloadDecodeDown() {
  const DecodeGemm d = tuning().decodeGemm;
  return !tuning().previousTiles && (d == DecodeGemm::kMma || d == DecodeGemm::kMma32 || d == DecodeGemm::kMmaDeep ||
                                     d == DecodeGemm::kMmaK128 || d == DecodeGemm::kMmaShallow || d == DecodeGemm::kInt4Wide);
}

// PDL is used only inside a PdlScope (the layer's enqueue, where every launch follows a kernel on the same
// stream: a programmatic edge from a memcpy or memset is not something to rely on), on sm_90+ devices, and
// unless switched off (tuning().pdl).
inline bool& pdlScopeFlag() {
  static thread_local bool active = false;
  return active;
}
inline bool pdlSupported() {
  static const bool device = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return device && tuning().pdl;
}
struct PdlScope {
  bool previous;
  explicit PdlScope(bool on) : previous(pdlScopeFlag()) { pdlScopeFlag() = on; }
  ~PdlScope() { pdlScopeFlag() = previous; }
  PdlScope(const PdlScope&) = delete;
  PdlScope& operator=(const PdlScope&) = delete;
};

// Launches kernel<<<grid, block, smem, stream>>>(args...), with PDL when the scope allows it. `name` is for the
// error message. Launch errors throw, like MOE_LAUNCHED.
// clusterX > 1: thread-block clusters of clusterX blocks along x (grid.x a multiple of it).
template <typename... KernelArgs, typename... Args>
void launchKernelClustered(const char* name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, int clusterX, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  cfg.attrs = attr;
  if (pdlScopeFlag() && pdlSupported()) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
    cfg.numAttrs++;
  }
  if (clusterX > 1) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attr[cfg.numAttrs].val.clusterDim.x = clusterX;
    attr[cfg.numAttrs].val.clusterDim.y = 1;
    attr[cfg.numAttrs].val.clusterDim.z = 1;
    cfg.numAttrs++;
  }
  const cudaError_t st = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (st != cudaSuccess) checkCuda(st, name, __FILE__, __LINE__);
  checkCuda(cudaGetLastError(), name, __FILE__, __LINE__);
}
template <typename... KernelArgs, typename... Args>
void launchKernel(const char* name, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                  cudaStream_t stream, Args&&... args) {
  launchKernelClustered(name, kernel, grid, block, smem, stream, 1, std::forward<Args>(args)...);
}

}  // namespace moe
