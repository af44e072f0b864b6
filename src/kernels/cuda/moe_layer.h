// The FusedMoE forward (docs/semantics.md section 7) run natively: weights uploaded once in the compute dtype and
// packed for the grouped GEMM, the whole chain enqueued in one call (optionally replayed as a CUDA graph per T).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "device_buffer.h"
#include "grouped_gemm.h"
#include "host_staging.h"
#include "moe_kernels.h"

namespace moe {

enum class TopkMethod { kGreedy, kNoauxTc, kGroupLimitedGreedy, kSparsemixer };
// Where the routing weight multiplies (docs/semantics.md 11.6).
enum class RoutingWeightOn { kOutput, kActivation, kInput };

struct LayerConfig {
  int hidden = 0;         // H
  int numExperts = 0;     // E
  int zeroExperts = 0;    // Z identity experts after the E real ones (the router scores E + Z)
  int topK = 0;           // k
  int intermediate = 0;   // I
  TopkMethod topkMethod = TopkMethod::kGreedy;
  int nGroup = 1, topkGroup = 1;
  float routedScalingFactor = 1.f;
  bool renormalize = true;
  float renormalizeEpsilon = -1.f;  // < 0: the method's own rule (softmax 0 under the 1e-12 floor; noaux_tc 1e-20)
  float sparsemixerEpsilon = 0.f;
  bool useCorrectionBias = false;
  bool routerBias = false;  // gate_bias [E+Z] added to the router logits
  int latent = 0;         // L, 0 = no latent projection
  bool withBias = false;
  RoutingWeightOn routingWeightOn = RoutingWeightOn::kOutput;
  SwigluActivation activation;  // the routed experts' (the shared expert's is plain SwiGLU)
  int sharedIntermediate = 0;  // S, 0 = no shared experts
  bool sharedGate = false;
  DType compute = DType::kFloat32;
};

// An int4 expert weight as docs/formats.md stores it in the [E, K, N] layout: codes int32 [E][ceil(K/8)][N],
// scales float32 [E][G][N], zero points (same shape) or null (8), G = ceil(K / groupSize).
struct Int4Weight {
  const int32_t* codes = nullptr;
  const float* scales = nullptr;
  const float* zeros = nullptr;
  int groupSize = 0;
};

// An int8 expert weight as docs/formats.md stores it in the [E, K, N] layout: codes int32 [E][ceil(K/4)][N] (four
// two's complement codes per word), scales float32 [E][G][N], G = ceil(K / groupSize); w = s * code.
struct Int8Weight {
  const int32_t* codes = nullptr;
  const float* scales = nullptr;
  int groupSize = 0;
};

// An mxfp4 expert weight in the [E, K, N] layout: E2M1 codes int32 [E][ceil(K/8)][N] (int4's packing), E8M0 block
// scales int32 [E][ceil(K/32)][ceil(N/4)] (four bytes per word along N); w = E2M1(code) * 2^(b - 127), NaN for b 255.
struct Mxfp4Weight {
  const int32_t* codes = nullptr;
  const int32_t* scales = nullptr;
};

// Host float32 arrays in the layer's (FastDeploy, [in, out]) layouts; absent ones are null.
struct LayerWeights {
  const float* gateWeight = nullptr;          // [H, E+Z]
  const float* gateBias = nullptr;            // [E+Z] (routerBias)
  const float* gateCorrectionBias = nullptr;  // [E+Z]
  const float* upGateProjWeight = nullptr;    // [E, D, 2I]
  const float* upGateProjBias = nullptr;      // [E, 2I]
  const float* downProjWeight = nullptr;      // [E, I, D]
  const float* downProjBias = nullptr;        // [E, D]
  const float* fc1LatentProjWeight = nullptr; // [H, L]
  const float* fc2LatentProjWeight = nullptr; // [L, H]
  const float* sharedUpGateProjWeight = nullptr;  // [H, 2S]
  const float* sharedDownProjWeight = nullptr;    // [S, H]
  const float* sharedExpertGateWeight = nullptr;  // [H]
  // Optional int4 copies of the expert weights (half compute dtypes): the decode GEMMs stream these (W4A16); the
  // float32 arrays above (their dequantized values) still feed the tensor-core paths.
  Int4Weight upGateProjInt4, downProjInt4;
  // Optional int8 copies (half compute dtypes): the tensor-core tiles read them at decode and mid sizes (W8A16).
  Int8Weight upGateProjInt8, downProjInt8;
  // Optional mxfp4 copies (half compute dtypes), read as the int8 copies are.
  Mxfp4Weight upGateProjMxfp4, downProjMxfp4;
};

// Where the host time of the last forward went (milliseconds, steady clock), for the end-to-end benchmark.
struct ForwardTimings {
  double uploadHostMs = 0;  // until the input's copy was enqueued (staging memcpy included)
  double waitMs = 0;        // from then until the output was in host memory (launch, kernels and download)
  double copyOutMs = 0;     // 0 since the copy-out overlaps the download (part of waitMs)
  double launchMs = 0;      // the graph launch (or eager enqueue) alone, host side
  double prefaultMs = 0;    // the output array's prefault on helper threads (overlapping upload and kernels)
  double prefaultWaitMs = 0;  // how long the download waited for that prefault
  double registerMs = 0;    // TFJS_MOE_CUDA_REGISTER: page-locking the caller's arrays
  // With TFJS_MOE_CUDA_TRACE=1 (else -1): GPU milliseconds of the upload, the kernels and the download (events).
  double gpuUploadMs = -1, gpuKernelMs = -1, gpuDownloadMs = -1;
};

// How a host forward moves y (x always goes through pinned staging unless kPageable): kStaged downloads into a
// pinned staging buffer and copies from there with several threads into the caller's (pageable) array; kPinned
// downloads straight into the caller's array, which is pinned; kPageable is the path from before pinned staging
// (straight from/to pageable memory, kept for the benchmark's A/B).
enum class HostCopy { kStaged, kPinned, kPageable };

class MoeLayer {
 public:
  // Enqueues on `stream` (not owned: the addon's one stream, so that activations passed between layers and ops
  // are ordered without events).
  MoeLayer(const LayerConfig& cfg, const LayerWeights& w, cudaStream_t stream);
  ~MoeLayer();
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  // x: host [T, H] float32 -> out: host [T, H] float32 (pinned memory is copied directly), and when ids is not
  // null the routing ids [T, k] the forward used. Synchronous; CUDA errors throw.
  void forward(const float* x, int T, float* out, int* ids, bool useGraph, HostCopy copy = HostCopy::kStaged);
  // forward() in two halves, so that the caller's host work overlaps the GPU (the addon makes the output tensor in
  // between): forwardBegin() copies x in (x may be reused on return) and enqueues the kernels and the download;
  // forwardEnd() waits and copies y into out (and ids) and returns. out and ids stay untouched by the caller in
  // between. Any other use of the layer ends an open forward first (settle()); so does the destructor.
  void forwardBegin(const float* x, int T, float* out, int* ids, bool useGraph, HostCopy copy = HostCopy::kStaged);
  void forwardEnd();
  bool forwardPending() const { return pending_.active(); }
  // x, out: device [T, H] float32 (enqueued on the stream, not waited for unless ids, host [T, k], is wanted).
  void forwardDevice(const float* x, int T, float* out, int* ids, bool useGraph);
  const ForwardTimings& lastTimings() const { return timings_; }
  // Kernel time of the forward with x already resident: per-iteration milliseconds (CUDA events).
  std::vector<float> benchmark(const float* x, int T, int warmup, int iters, bool useGraph);
  // Per-stage kernel milliseconds (median over iters), eager launches with events between the stages.
  std::vector<std::pair<std::string, float>> profile(const float* x, int T, int iters);
  size_t residentBytes() const;
  int hidden() const { return cfg_.hidden; }
  int topK() const { return cfg_.topK; }

 private:
  void ensureWorkspace(int T);
  void dropGraphs();
  void enqueue(int T);  // reads dX_, writes dOut_
  void mark(const char* stage);  // records an event after a stage while profiling
  // hostIn / hostOut (device pointers of mapped host blocks, both or neither): the graph also copies x in from
  // hostIn and y out to hostOut with kernels (its own graph per T).
  void run(int T, bool useGraph, const float* hostIn = nullptr, float* hostOut = nullptr);
  // timings_ of a host forward: started at t0, x enqueued at t1, the kernels at t2, y on the host at t3.
  void finishTimings(std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t1,
                     std::chrono::steady_clock::time_point t2, std::chrono::steady_clock::time_point t3, bool trace);
  static int l2PrefetchEnv();
  int l2Prefetch_ = 0;  // TFJS_MOE_CUDA_L2_PREFETCH as the graphs were captured (0, 1, 2)
  bool denseWeightsFinite_ = true;  // router / latent weights all finite: the dense float32 GEMMs may use TF32 x 3
  static std::string kernelEnvSwitches();
  std::string envSwitches_;  // kernelEnvSwitches() as the graphs were captured
  GemmProblem dense(const void* A, int lda, const void* B, DType elem, int M, int N, int K) const;
  int gateSplit(int T) const;  // split-K factor of the router GEMM
  int gateSplit(int T, int maxSplit) const;
  // The prefill down GEMM with the weighted combine in its epilogue (GemmProblem.combineAdd, wgmma only): launches it
  // into routedOut and returns true, or returns false (then the down GEMM and the combine kernel run as before).
  bool downCombineAdd(bool half, int T, float* routedOut, const GemmProblem& dn, const int* rowToPair,
                      const float* weights, bool weightsApplied);

  LayerConfig cfg_;
  int D_ = 0;     // expert input width: L in latent mode, else H
  // I and S rounded up to the GEMM's column group (the padded columns hold zeros), the router's output columns
  // (E + Z routed, then the shared-expert gate).
  int intermediatePadded_ = 0, sharedPadded_ = 0, gateCols_ = 0;
  RoutingParams routing_;
  int group_ = 0;
  cudaStream_t stream_ = nullptr;

  // resident weights
  DeviceBuffer gateT_, gateBias_, routerBias_, upGate_, upGateBias_, down_, downBias_, fc1T_, fc2T_, sharedUpGate_, sharedDown_;
  // int4 copies for the streaming GEMM, columns in the packed order of upGate_ / down_ (see packInt4)
  struct Int4Device {
    DeviceBuffer codes, scales, zeros;
    int groupSize = 0;
    bool present() const { return codes.bytes() > 0; }
  } upGateQ_, downQ_;
  void packInt4(Int4Device& dst, const Int4Weight& src, int count, int K, int N, int Nout, int Kout, int group);
  // int8 copies (codes in the fragment order of GemmProblem.bInt8; zeros unused), see packInt8
  Int4Device upGateQ8_, downQ8_;
  void packInt8(Int4Device& dst, const Int8Weight& src, int count, int K, int N, int Nout, int Kout, int group);
  // mxfp4 copies: int4's code layout, the block scales as float32 2^(b-127) (see packMxfp4)
  Int4Device upGateFp4_, downFp4_;
  void packMxfp4(Int4Device& dst, const Mxfp4Weight& src, int count, int K, int N, int Nout, int Kout, int group);
  // TFJS_MOE_CUDA_FORMATS=copy (A/B): the GEMMs read the dequantized copy instead of the int8 / mxfp4 codes (other
  // values, read by the launcher, set how many rows per expert the codes serve: grouped_gemm_launch.cuh).
  static bool nativeFormatsOff();
  // workspace, sized for capT_ tokens; xCompute_: x in the compute dtype (bf16/f16 runs), sharedHidden_: the shared
  // expert's SwiGLU output
  int capT_ = -1;
  DeviceBuffer dX_, dOut_, xCompute_, logits_, gatePartial_, ids_, weights_, sharedScale_, perm_, h_, y_, latentF_,
      latentE_, sharedHidden_, counters_;
  std::map<int, cudaGraphExec_t> graphs_;
  int graphsTuning_ = 0;  // tuning().generation the graphs were captured under
  PinnedStaging staging_, outStaging_;
  MappedHostBuffer mappedIn_, mappedOut_;  // x and y of a small forward, read and written by its graph
  SlicedDownload download_;
  // The open half of a split host forward (forwardBegin .. forwardEnd).
  struct Pending {
    std::chrono::steady_clock::time_point t0, t1, t2;
    float* out = nullptr;
    size_t bytes = 0;
    bool mapped = false, trace = false;
    const float* regX = nullptr;  // TFJS_MOE_CUDA_REGISTER: unregistered at the end
    float* regOut = nullptr;
    bool active() const { return out != nullptr; }
  };
  Pending pending_;
  cudaEvent_t trace_[4] = {};  // TFJS_MOE_CUDA_TRACE: before upload, before kernels, after kernels, after download
  ForwardTimings timings_;
  std::vector<std::pair<std::string, cudaEvent_t>>* marks_ = nullptr;
};

}  // namespace moe
