// Host-side description of one grouped GEMM over contiguous row segments (docs/semantics.md section 4), shared by
// the kernel file and its callers. B is always stored [E][N][K] (K contiguous): that is the torch Linear
// layout, the layout the tensor-core fragments want, and what the layer converts its weights to once.
#pragma once

#include "moe_common.cuh"

namespace moe {

enum class Epilogue : int {
  kStore = 0,       // C[r][n] = acc + bias[e][n]
  kSwiglu = 1,      // columns come interleaved in groups (gate G, up G): C[r][i] = silu(g) * u * scale[r]
  kAccumulate = 2,  // C[r][n] += acc (dense only: each element has one writer)
  // Decode, token-owned (half types, weight-streaming kernel only): problem row t is a token; its pairs
  // (t, j) read A row pairRow[t*k+j] and expert pairExpert[t*k+j]'s weights, and
  // C[t][n] = sum over j in order of (weightsApplied ? acc_j : w_j * acc_j) + (bias ? w_j * bias[e_j][n] : 0):
  // the down GEMM with the weighted combine of semantics section 6, no [R, N] intermediate.
  kCombine = 3,
};

struct GemmProblem {
  DType elem = DType::kFloat32;   // A and B element type
  DType out = DType::kFloat32;    // C element type
  const void* A = nullptr;        // [rows][lda] elements
  int lda = 0;
  // When set, problem row r reads A row aRowIndex[r] / aRowDiv (a negative index reads zeros): the permute's
  // row -> (token, slot) map, so the permuted activations are never materialized.
  const int* aRowIndex = nullptr;
  int aRowDiv = 1;
  const void* B = nullptr;        // [E][N][K]
  const float* bias = nullptr;    // [E][N] (in B's column order), or null
  void* C = nullptr;
  int ldc = 0;
  const float* scale = nullptr;       // kSwiglu row scale: scale[scaleIndex ? scaleIndex[r] : r]; null = 1
  const int* scaleIndex = nullptr;
  // kSwiglu: the row scale multiplies the accumulators (the GEMM's input rows) instead of the activation.
  bool scaleInput = false;
  SwigluActivation activation;    // kSwiglu: plain or clamped SwiGLU
  int M = 0;                      // rows of the problem (R, or T when dense)
  int N = 0, K = 0;
  SegmentView seg{nullptr, nullptr, 1};  // offsets == nullptr: one dense segment [0, M) of expert 0
  int group = 8;                  // kSwiglu interleave width G; must equal swigluGroup(elem)
  Epilogue epilogue = Epilogue::kStore;
  // Expected rows per non-empty segment: picks the tile height (small = weight streaming for decode).
  int rowsPerSegmentHint = 0;
  // float32 dense kStore only: K is cut into kSplit slices (multiples of kSplitChunk); slice z writes its partial
  // product, without bias, to C + z * M * ldc. launchSplitKReduce sums the slices (deterministic order).
  int kSplit = 1;
  // float32 dense kStore only, A dense (lda == K): also write A converted to aCopyElem into aCopy [M][K]. The
  // few-rows (decode router) kernel does it while it streams A anyway, which saves the layer a convert kernel;
  // other paths launch the conversion after the GEMM.
  void* aCopy = nullptr;
  DType aCopyElem = DType::kBFloat16;
  // kCombine: the permute's rowMap, the routing ids and weights ([M][topK]), the rows of A (R), and whether the
  // routing weight was applied before (probInAdvance). The experts are 0 .. seg.numExperts - 1.
  const int* pairRow = nullptr;
  const int* pairExpert = nullptr;
  const float* pairWeight = nullptr;
  int topK = 0;
  int aRows = 0;
  bool weightsApplied = false;
  // kCombine: a pair whose expert id is >= seg.numExperts (a zero-computation expert) adds w * identityX[t][n]
  // ([M][ldc] float32) when set, as the combine kernel does.
  const float* identityX = nullptr;
  // kStore over segments writing float32 (the decode down GEMM): when combineOut is set, the last block to finish
  // each column tile (counted in tileCounters[blockIdx.y]: zero before the launch, left zero) also writes the
  // weighted combine of that tile's columns for tokens 0 .. combineTokens - 1 into combineOut [combineTokens][ldc]
  // (combineElement over C's rows: pairRow, pairWeight, pairExpert, topK, weightsApplied, identityX as for kCombine;
  // combineBias the [E][N] down bias, weighted). Saves the combine kernel's launch at decode sizes.
  // Segmented mma tiles: before waiting for the previous kernel (programmatic dependent launch), each expert's
  // first row tile asks L2 for its weight rows. Only for a GEMM whose segments were written before the previous
  // kernel began (the decode down GEMM: the permute ran before the up_gate GEMM), and weights that fit in L2.
  bool prefetchB = false;
  // Segmented mma tiles: the tile lookup and the first stages' B loads go before waiting for the previous kernel
  // (programmatic dependent launch; A's loads wait). Only for a GEMM whose segments were written before the previous
  // kernel began and whose B no kernel writes (the decode down GEMM).
  bool preloadB = false;
  // Segmented mma tiles (the decode up_gate GEMM at one token, TFJS_MOE_CUDA_L2_PREFETCH=2): each expert's first row
  // tiles ask L2 for the next GEMM's weights of the same expert, prefetchNextBytes contiguous bytes per expert at
  // prefetchNext, split over the column tiles; the streamed DRAM is busier while this GEMM ramps and drains, and the
  // down GEMM then reads L2.
  const void* prefetchNext = nullptr;
  long long prefetchNextBytes = 0;
  // B is read once (mma tiles): its loads are marked evict-first in L2 (keeps a following GEMM's prefetch in L2).
  bool bStreamOnce = false;
  // Segmented mma tiles: blockIdx.x walks the column tiles and blockIdx.y the row tiles (the launcher swaps the
  // grid), so the blocks resident together read all column tiles of a few experts, not one column tile of every
  // expert (combineOut's tail then counts blocks per blockIdx.x).
  bool colTilesFirst = false;
  float* combineOut = nullptr;
  const float* combineBias = nullptr;
  int combineTokens = 0;
  int* tileCounters = nullptr;
  // Optional int4 copy of B for the weight-streaming kernel (decode, W4A16): codes [E][N][K/8] int32 words, 8 codes
  // along K per word, the lowest k in the lowest bits; w = scale * (code - zero), scales and zeros [E][N][K/groupSize]
  // float32 (zeros null: 8). Needs K and groupSize multiples of 32. The tensor-core paths read B.
  const int32_t* bInt4 = nullptr;
  const float* bScales = nullptr;
  const float* bZeros = nullptr;
  int groupSize = 0;
  // int4 tensor-core tiles: with groupSize 32 each code row's scales (zeros) of a stage are consecutive, loaded as
  // vectors instead of one 4-byte copy and a division per group, and a stage without zero points keeps no zero slots
  // (set by the launcher: bScales / bZeros 16-byte aligned).
  bool int4ScaleVectors = false;
  // int4 mma tiles: the code loads ask L2 for 0 (their 32-byte sectors only), 128 or 256 bytes around each (cp.async
  // .L2::128B / ::256B): a stage reads 16-64 bytes of each code row, the next stages the bytes after them. Set by the
  // launcher (int4CodePrefetchBytes; TFJS_MOE_CUDA_CODE_PREFETCH for A/B).
  int codePrefetchBytes = 0;
  // Optional int8 copy of B for the tensor-core tiles (W8A16): [E][N][K/4] words of 4 codes (two's complement), the
  // codes of each 16-value K step in fragment order (word t holds k 2t, 2t+1, 2t+8, 2t+9), w = scale * code with
  // bScales [E][N][K/groupSize] (no zero points). Needs K and groupSize multiples of 32; bInt4 must be null.
  const int32_t* bInt8 = nullptr;
  // Optional mxfp4 copy of B for the tensor-core tiles: E2M1 codes in bInt4's layout ([E][N][K/8] words, 8 codes per
  // word, the lowest k lowest), w = E2M1(code) * scale with bScales [E][N][K/32] float32 (2^(b-127) of each block's
  // E8M0 byte b, NaN for 255). Needs K % 32 == 0 and groupSize 32; bInt4 and bInt8 must be null.
  const int32_t* bFp4 = nullptr;
  // kStore over segments writing float32, on the wgmma GEMM (launchGroupedGemmSm90: the prefill down GEMM) and the
  // mma.sync tiles (the decode down GEMM, MoeLayer::enqueue; not the streaming kernels): when
  // combineAdd is set, row r is not stored to C but added into combineAdd[q / topK][n] ([tokens][ldc], zeroed before),
  // q = rowToPair[r], as (weightsApplied ? acc : w acc) + (bias ? w bias[e][n] : 0) with w = pairWeight[q]: the
  // weighted combine of semantics section 6 without the [R, N] intermediate. Float32 atomic adds: a token's k slots
  // are summed in no fixed order.
  float* combineAdd = nullptr;
  const int* rowToPair = nullptr;
};

// The interleave width of gate/up columns the kernels of each element type expect for kSwiglu.
inline int swigluGroup(DType elem) { return elem == DType::kFloat32 ? 32 : 8; }

void launchGroupedGemm(const GemmProblem& p, cudaStream_t stream);

// Whether launchGroupedGemm runs p with Epilogue::kCombine (p otherwise set up for it): half types, the layout the
// streaming kernel needs, the token's rows within its shared memory, the streaming GEMM not switched off.
bool combineInGemmSupported(const GemmProblem& p);

// The K slice length of a split: a multiple of every float32 tile's BK.
__host__ __device__ inline int kSplitChunk(int K, int kSplit) {
  const int per = (K + kSplit - 1) / kSplit;
  return (per + 31) / 32 * 32;
}

// out[m][n] = sum over z of partial[z][m][n] + bias[n].
void launchSplitKReduce(const float* partial, int kSplit, int M, int N, const float* bias, float* out,
                        cudaStream_t stream);

}  // namespace moe
