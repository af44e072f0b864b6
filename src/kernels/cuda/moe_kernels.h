// Host-side launchers of every MoE kernel (device pointers in, enqueued on `stream`, nothing synchronized).
// The N-API glue and the layer call these; the .cu files implement them.
#pragma once

#include "grouped_gemm.h"

namespace moe {

// Softmax top-k routing (docs/semantics.md section 1) for T rows of `logits` (row stride ld >= E).
// sharedGate, when set, receives sigmoid(logits[t][E]) (the layer keeps the shared-expert gate in column E).
void launchTopkSelect(const float* logits, int T, int E, int ld, const float* bias, int k, bool renormalize, int* ids,
                      float* weights, float* sharedGate, cudaStream_t stream);

// noaux_tc routing (section 2). scores may be null (the layer does not need the dense sigmoid matrix).
void launchMoeScores(const float* logits, int T, int E, int ld, const float* bias, int nGroup, int topkGroup, int k,
                     float routedScalingFactor, bool renormalize, float* scores, int* ids, float* weights,
                     float* sharedGate, cudaStream_t stream);

// Device buffers of a permutation of T*k (token, slot) pairs into R rows.
struct PermuteBuffers {
  int* tokensPerExpert;  // [E]
  int* offsets;          // [E+1]
  int* tilePrefix;       // [kTileClasses][E+1]
  int* rowToPair;        // [R]: t*k + j of the pair in row r, -1 for padding and unused rows
  int* rowMap;           // [T*k]: the row of pair (t, j); -1 for an id outside [0, E)
  int* scratch;          // [E] (counts)
};
// Stable counting sort of the pairs by expert (section 3); rows of expert e start at offsets[e], each segment
// padded to a multiple of `alignment`. Ids outside [0, E) are dropped (never written out of bounds).
void launchPermute(const int* ids, int T, int k, int E, int alignment, int R, const PermuteBuffers& out,
                   cudaStream_t stream);

// Offsets + tile prefix for caller-given segments: expertOffsets [E+1] (areOffsets) or tokensPerExpert [E].
void launchSegmentsFrom(const int* segments, bool areOffsets, int E, int* offsets, int* tilePrefix,
                        cudaStream_t stream);

// permutedX[r] = x[rowToPair[r] / k], zero where rowToPair[r] < 0.
void launchGatherRows(const float* x, int D, const int* rowToPair, int k, int R, float* out, cudaStream_t stream);

// out[r,i] = silu(x[r,i]) * x[r,I+i] * scale[r] (section 5).
void launchSwiglu(const float* x, int R, int I, const float* scale, float* out, cudaStream_t stream);

// Weighted combine (section 6); rowMap / ids entries out of range are skipped.
void launchCombine(const float* y, int R, int D, const int* rowMap, const float* weights, const int* ids, int T,
                   int k, int E, const float* bias, bool weightsApplied, float* out, cudaStream_t stream);

// float32 -> elem (a copy when elem is float32).
void launchConvert(const float* in, void* out, DType elem, long long n, cudaStream_t stream);

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
