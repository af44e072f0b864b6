// Host-side launchers of every MoE kernel (device pointers in, enqueued on `stream`, nothing synchronized).
// The N-API glue and the layer call these; the .cu files implement them.
#pragma once

#include "grouped_gemm.h"

namespace moe {

// What the routing kernels do with the scores (docs/semantics.md sections 1, 2, 11.3, 11.4, 11.7, 11.8).
struct RoutingParams {
  int k = 1;
  int nGroup = 1, topkGroup = 1;      // softmax: group_limited_greedy when nGroup > 1; noaux_tc: its groups
  float routedScalingFactor = 1.f;    // every method, after renormalisation
  bool renormalize = true;
  // Softmax: w / max(sum + eps, 1e-12) (the op's own rule is 0); noaux_tc: w / (sum + eps) (its own rule 1e-20).
  float renormalizeEpsilon = 0.f;
  bool sparsemixer = false;           // PhiMoE's two masked-softmax rounds (k = 2, no groups, no bias)
  float sparsemixerEpsilon = 0.f;
};

// Softmax top-k routing (section 1) for T rows of `logits` (row stride ld >= E), or sparsemixer.
// sharedGate, when set, receives sigmoid(logits[t][E]) (the layer keeps the shared-expert gate in column E).
void launchTopkSelect(const float* logits, int T, int E, int ld, const float* bias, const RoutingParams& rp, int* ids,
                      float* weights, float* sharedGate, cudaStream_t stream);
// The same from the router GEMM's split-K slabs (partial non-null: [kSplit][T][ld], GemmProblem.kSplit; logits then
// unread and unwritten): each token's logits summed in slice order (+ routerBias, may be null) as launchSplitKReduce
// sums them (bitwise the same) and routed: one kernel where the reduction and the top-k were two.
void launchTopkSelectSplitK(const float* partial, int kSplit, const float* routerBias, const float* logits, int T,
                            int E, int ld, const float* bias, const RoutingParams& rp, int* ids, float* weights,
                            float* sharedGate, cudaStream_t stream);

// noaux_tc routing (section 2). scores may be null (the layer does not need the dense sigmoid matrix).
void launchMoeScores(const float* logits, int T, int E, int ld, const float* bias, const RoutingParams& rp,
                     float* scores, int* ids, float* weights, float* sharedGate, cudaStream_t stream);

// Device buffers of a permutation of T*k (token, slot) pairs into R rows.
struct PermuteBuffers {
  int* tokensPerExpert;  // [E]
  int* offsets;          // [E+1]
  int* tilePrefix;       // [kTileClasses][E+1]
  int* rowToPair;        // [R]: t*k + j of the pair in row r, -1 for padding and unused rows
  int* rowMap;           // [T*k]: the row of pair (t, j); -1 for an id outside [0, E)
  int* scratch;          // [E] (counts)
  // Optional: zeroFloats floats at zeroOut set to 0 by the permute (the layer's output, for a down GEMM that adds
  // into it: GemmProblem.combineAdd at decode sizes).
  float* zeroOut = nullptr;
  long long zeroFloats = 0;
};
// Stable counting sort of the pairs by expert (section 3); rows of expert e start at offsets[e], each segment
// padded to a multiple of `alignment`. Ids outside [0, E) are dropped (never written out of bounds).
void launchPermute(const int* ids, int T, int k, int E, int alignment, int R, const PermuteBuffers& out,
                   cudaStream_t stream);

// Decode (T <= 16): the router GEMM, routing and the permute in one kernel (decode_route.cu). gate is the router's
// dense float32 problem (M = T rows of x, N = ldc = the logit columns, written to gate.C); the routing reads those
// logits as launchTopkSelect / launchMoeScores do and the permute writes `perm` as launchPermute does (alignment 1).
struct DecodeRouteArgs {
  int routed = 0;      // experts the routing chooses among (E + zero experts)
  int numExperts = 0;  // E: the experts with FFN rows (the permute's)
  const float* corr = nullptr;  // correction bias [routed] or null
  RoutingParams rp;
  bool noaux = false;  // noaux_tc, else softmax / sparsemixer
  int* ids = nullptr;
  float* weights = nullptr;
  float* sharedGate = nullptr;
  int R = 0;           // rows of the permutation (T * k)
  PermuteBuffers perm{};
  int* counter = nullptr;  // one int, zero before the launch; left zero
};
bool decodeRouteFits(const GemmProblem& gate, const DecodeRouteArgs& a);
void launchDecodeRoute(const GemmProblem& gate, const DecodeRouteArgs& a, cudaStream_t stream);
// The same routing + permute as one block after a separate router GEMM (logits [T][ld]), T <= 16.
bool decodeRoutePermuteFits(int T, const DecodeRouteArgs& a);
void launchDecodeRoutePermute(const float* logits, int T, int ld, const DecodeRouteArgs& a, cudaStream_t stream);

// Offsets + tile prefix for caller-given segments: expertOffsets [E+1] (areOffsets) or tokensPerExpert [E].
void launchSegmentsFrom(const int* segments, bool areOffsets, int E, int* offsets, int* tilePrefix,
                        cudaStream_t stream);

// permutedX[r] = x[rowToPair[r] / k] (* pairScale[rowToPair[r]] when pairScale is set: routingWeightOn 'input'),
// zero where rowToPair[r] < 0.
void launchGatherRows(const float* x, int D, const int* rowToPair, int k, int R, const float* pairScale, float* out,
                      cudaStream_t stream);

// out[r,i] = act(x[r,i], x[r,I+i]) * scale[r] (sections 5, 11.2).
void launchSwiglu(const float* x, int R, int I, const float* scale, const SwigluActivation& act, float* out,
                  cudaStream_t stream);

// Weighted combine (section 6); rowMap / ids entries out of range are skipped. identityX [T][D], when set, is the
// input of the zero-computation experts (section 11.5): a slot with no row (rowMap -1) adds w * identityX[t].
void launchCombine(const float* y, int R, int D, const int* rowMap, const float* weights, const int* ids, int T,
                   int k, int E, const float* bias, bool weightsApplied, const float* identityX, float* out,
                   cudaStream_t stream);

// TFJS_MOE_CUDA_PREFILL_LEGACY=1 (for A/B timing): the dense float32 GEMM, permute and combine kernels from before
// the many-rows ones (gemm_dense_f32.cuh, the one-pass permute, the vectorized combine). Read at each launch (the
// layer recaptures its graphs when it changes).
bool legacyPrefillKernels();
// Dense float32 problems of at least this many rows take the 128x128 tiles (gemm_dense_f32.cuh); fewer rows fill
// too few blocks of that size.
constexpr int kDenseF32MinRows = 256;
// Their math core: TF32 x 3 on tensor cores (default: tiles by cp.async), or exact FMA with
// TFJS_MOE_CUDA_DENSE_F32=fma, or TF32 x 3 with the tiles staged through registers (session 4's kernel, the same
// outputs bitwise) with TFJS_MOE_CUDA_DENSE_F32=tf32x3-regs (A/B; read at each launch).
enum class DenseF32Core { kFma, kTf32x3, kTf32x3Regs };
DenseF32Core denseF32Core();
// While one with `on` lives (this thread), dense float32 GEMMs take the FMA core whatever the default (the layer's,
// when its dense weights hold a non-finite value, which TF32 x 3 would not propagate as IEEE float32 does).
struct ExactDenseF32Scope {
  bool previous;
  explicit ExactDenseF32Scope(bool on);
  ~ExactDenseF32Scope();
  ExactDenseF32Scope(const ExactDenseF32Scope&) = delete;
  ExactDenseF32Scope& operator=(const ExactDenseF32Scope&) = delete;
};

// float32 -> elem (a copy when elem is float32).
void launchConvert(const float* in, void* out, DType elem, long long n, cudaStream_t stream);

// n floats copied by a kernel on `stream`: the device-resident forward's copies into and out of the layer's graph
// buffers stay on the compute engine between graph launches (cudaMemcpyAsync there: TFJS_MOE_CUDA_DEVICE_COPY=memcpy).
void launchDeviceCopy(const float* in, float* out, long long n, cudaStream_t stream);

// Packs one expert's float32 [K][N] (in x out) matrix into elem [Nout][Kout] (K contiguous) for the grouped
// GEMM: dst row n reads source column colOf(n) (see packColumn), columns/rows past the source are zeros.
// group > 0 interleaves gate/up column blocks of width `group` (the SwiGLU epilogue's order) for a source
// of 2*I columns; group == 0 keeps the column order.
void launchPackWeights(const float* src, int K, int N, void* dst, DType elem, int Nout, int Kout, int group,
                       cudaStream_t stream);

// The source column packed into destination row n (host and device share it).
__host__ __device__ inline int packColumn(int n, int N, int group) {
  if (group == 0) return n < N ? n : -1;
  const int I = N / 2;
  const int block = n / (2 * group), w = n % (2 * group);
  const int i = block * group + (w < group ? w : w - group);
  if (i >= I) return -1;
  return w < group ? i : I + i;
}

}  // namespace moe
