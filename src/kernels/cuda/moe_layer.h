// The FusedMoE forward (docs/semantics.md section 7) run natively: weights uploaded once in the compute dtype and
// packed for the grouped GEMM, the whole chain enqueued in one call (optionally replayed as a CUDA graph per T).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "device_buffer.h"
#include "grouped_gemm.h"

namespace moe {

struct LayerConfig {
  int hidden = 0;         // H
  int numExperts = 0;     // E
  int topK = 0;           // k
  int intermediate = 0;   // I
  bool noauxTc = false;   // topkMethod 'noaux_tc' (else 'greedy')
  int nGroup = 1, topkGroup = 1;
  float routedScalingFactor = 1.f;
  bool renormalize = true;
  bool useCorrectionBias = false;
  int latent = 0;         // L, 0 = no latent projection
  bool withBias = false;
  bool probInAdvance = false;
  int sharedIntermediate = 0;  // S, 0 = no shared experts
  bool sharedGate = false;
  DType compute = DType::kFloat32;
};

// Host float32 arrays in the layer's (FastDeploy, [in, out]) layouts; absent ones are null.
struct LayerWeights {
  const float* gateWeight = nullptr;          // [H, E]
  const float* gateCorrectionBias = nullptr;  // [E]
  const float* upGateProjWeight = nullptr;    // [E, D, 2I]
  const float* upGateProjBias = nullptr;      // [E, 2I]
  const float* downProjWeight = nullptr;      // [E, I, D]
  const float* downProjBias = nullptr;        // [E, D]
  const float* fc1LatentProjWeight = nullptr; // [H, L]
  const float* fc2LatentProjWeight = nullptr; // [L, H]
  const float* sharedUpGateProjWeight = nullptr;  // [H, 2S]
  const float* sharedDownProjWeight = nullptr;    // [S, H]
  const float* sharedExpertGateWeight = nullptr;  // [H]
};

class MoeLayer {
 public:
  MoeLayer(const LayerConfig& cfg, const LayerWeights& w);
  ~MoeLayer();
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  // x: host [T, H] float32 -> out: host [T, H] float32. Synchronous; CUDA errors throw.
  void forward(const float* x, int T, float* out, bool useGraph);
  // Kernel time of the forward with x already resident: per-iteration milliseconds (CUDA events).
  std::vector<float> benchmark(const float* x, int T, int warmup, int iters, bool useGraph);
  // Per-stage kernel milliseconds (median over iters), eager launches with events between the stages.
  std::vector<std::pair<std::string, float>> profile(const float* x, int T, int iters);
  size_t residentBytes() const;
  int hidden() const { return cfg_.hidden; }

 private:
  void ensureWorkspace(int T);
  void enqueue(int T);  // reads dX_, writes dOut_
  void mark(const char* stage);  // records an event after a stage while profiling
  void run(int T, bool useGraph);
  GemmProblem dense(const void* A, int lda, const void* B, DType elem, int M, int N, int K) const;
  int gateSplit(int T) const;  // split-K factor of the router GEMM

  LayerConfig cfg_;
  int D_ = 0;     // expert input width: L in latent mode, else H
  // I and S rounded up to the GEMM's column group (the padded columns hold zeros), the router's output columns.
  int intermediatePadded_ = 0, sharedPadded_ = 0, gateCols_ = 0;
  int group_ = 0;
  cudaStream_t stream_ = nullptr;

  // resident weights
  DeviceBuffer gateT_, gateBias_, upGate_, upGateBias_, down_, downBias_, fc1T_, fc2T_, sharedUpGate_, sharedDown_;
  // workspace, sized for capT_ tokens; xCompute_: x in the compute dtype (bf16/f16 runs), sharedHidden_: the shared
  // expert's SwiGLU output
  int capT_ = -1;
  DeviceBuffer dX_, dOut_, xCompute_, logits_, gatePartial_, ids_, weights_, sharedScale_, perm_, h_, y_, latentF_,
      latentE_, sharedHidden_;
  std::map<int, cudaGraphExec_t> graphs_;
  std::vector<std::pair<std::string, cudaEvent_t>>* marks_ = nullptr;
};

}  // namespace moe
