// FusedMoE forward on the GPU. Per call: gate GEMM (float32, as routing must be) -> routing -> permute ->
// [latent fc1] -> grouped GEMM with SwiGLU x scale fused in its epilogue (activations gathered through the
// permutation, never materialized) -> grouped down GEMM -> weighted combine (+ down bias) -> [latent fc2]
// -> shared experts accumulated into the output.
#include "moe_layer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gemm_sm90.h"
#include "moe_kernels.h"

namespace moe {
namespace {

int roundUp(int v, int m) { return (v + m - 1) / m * m; }

// Up to this many tokens the layer's kernels are launched with programmatic dependent launch (see enqueue).
constexpr int kPdlMaxTokens = 32;
// The router GEMM's largest split-K factor (gateSplit): T = 256 on 128-row tiles fills 64 blocks of four k tiles
// (H200, session 8 batch B1b, the cp.async router kernel: T = 256 layer 0.3550 ms vs 0.3567-0.3580 at 64 slices;
// session 6's batch N with the register-staged kernel: 0.3608 vs 0.3635). TFJS_MOE_CUDA_GATE_SPLIT_MAX may ask for up
// to kGateSplitLimit (the partial-sum workspace is sized for it).
constexpr int kGateSplitMax = 32, kGateSplitLimit = 64;
// The down GEMM is token-owned (combine fused) while R * this <= E: then the T*k pairs hit almost only distinct
// experts (T = 1, 2 at E = 128, k = 8), so streaming each pair's expert reads hardly any weight twice.
constexpr long long kTokenOwnedDownFactor = 8;

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("FusedMoE cuda: " + what);
}

// Uploads a float32 host array of n floats.
void uploadF32(DeviceBuffer& dst, const float* host, size_t n, cudaStream_t stream) {
  dst.ensure(n * sizeof(float));
  if (n) MOE_CUDA(cudaMemcpyAsync(dst.as(), host, n * sizeof(float), cudaMemcpyHostToDevice, stream));
}

// Packs `count` stacked float32 [K][N] matrices into elem [count][Nout][Kout] (see launchPackWeights).
void packStacked(DeviceBuffer& dst, const float* host, int count, int K, int N, int Nout, int Kout, int group,
                 DType elem, cudaStream_t stream) {
  const size_t per = static_cast<size_t>(Nout) * Kout * dtypeBytes(elem);
  dst.ensure(per * count);
  DeviceBuffer staging(static_cast<size_t>(K) * N * sizeof(float), nullptr);
  for (int e = 0; e < count; e++) {
    MOE_CUDA(cudaMemcpyAsync(staging.as(), host + static_cast<size_t>(e) * K * N, static_cast<size_t>(K) * N * 4,
                             cudaMemcpyHostToDevice, stream));
    launchPackWeights(staging.as<float>(), K, N, dst.as<char>() + per * e, elem, Nout, Kout, group, stream);
  }
  MOE_CUDA(cudaStreamSynchronize(stream));  // staging is freed on return
}

}  // namespace

MoeLayer::MoeLayer(const LayerConfig& cfg, const LayerWeights& w, cudaStream_t stream)
    : cfg_(cfg), stream_(stream) {
  const int H = cfg.hidden, E = cfg.numExperts, I = cfg.intermediate, L = cfg.latent, S = cfg.sharedIntermediate;
  const int Z = cfg.zeroExperts, routed = E + Z;  // the router scores the identity experts too
  const TopkMethod method = cfg.topkMethod;
  require(H > 0 && E > 0 && I > 0 && Z >= 0 && cfg.topK >= 1 && cfg.topK <= routed, "hidden, numExperts, intermediateSize and topK must be positive (topK <= numExperts + zeroExperts)");
  require(w.gateWeight && w.upGateProjWeight && w.downProjWeight, "gate, up_gate_proj and down_proj weights are required");
  const bool grouped = method == TopkMethod::kNoauxTc || method == TopkMethod::kGroupLimitedGreedy;
  require(grouped ? (routed % cfg.nGroup == 0 && cfg.topkGroup >= 1 && cfg.topkGroup <= cfg.nGroup) : (cfg.nGroup == 1 && cfg.topkGroup == 1), "groups must divide numExperts + zeroExperts (noaux_tc, group_limited_greedy; 1 otherwise)");
  require(method != TopkMethod::kSparsemixer || (cfg.topK == 2 && !cfg.useCorrectionBias), "sparsemixer picks exactly 2 experts and has no correction bias");
  require(method != TopkMethod::kGroupLimitedGreedy || !cfg.useCorrectionBias, "group_limited_greedy has no correction bias");
  require(Z == 0 || L == 0, "zeroExperts is not defined with latentSize");
  require(cfg.routingWeightOn != RoutingWeightOn::kInput || !cfg.withBias, "routingWeightOn 'input' is not defined with withBias");
  require(!cfg.activation.clamped || cfg.activation.limit > 0, "swigluLimit must be > 0");
  require(!cfg.useCorrectionBias || w.gateCorrectionBias, "useCorrectionBias needs gateCorrectionBias");
  require(!cfg.routerBias || w.gateBias, "routerBias needs gateBias");
  require(!cfg.withBias || (w.upGateProjBias && w.downProjBias), "withBias needs upGateProjBias and downProjBias");
  require(L == 0 || (w.fc1LatentProjWeight && w.fc2LatentProjWeight), "latentSize needs fc1/fc2 latent weights");
  require(S == 0 || (w.sharedUpGateProjWeight && w.sharedDownProjWeight), "sharedExpertIntermediateSize needs shared weights");
  require(!cfg.sharedGate || (S > 0 && w.sharedExpertGateWeight), "sharedExpertGate needs shared experts and their gate weight");

  {
    // TF32 x 3 (the dense float32 core) splits each operand: an infinite weight's zero remainder times an infinite
    // part gives NaN where float32 gives +-inf, so a layer with a non-finite dense weight keeps the FMA core.
    auto finite = [](const float* v, size_t n) {
      return v == nullptr || std::all_of(v, v + n, [](float x) { return std::isfinite(x); });
    };
    denseWeightsFinite_ = finite(w.gateWeight, static_cast<size_t>(H) * routed) &&
                          finite(w.sharedExpertGateWeight, cfg.sharedGate ? H : 0) &&
                          finite(w.fc1LatentProjWeight, static_cast<size_t>(H) * L) &&
                          finite(w.fc2LatentProjWeight, static_cast<size_t>(L) * H);
  }
  {
    const DType elem = cfg.compute;
    D_ = L > 0 ? L : H;
    group_ = swigluGroup(elem);
    intermediatePadded_ = roundUp(I, group_);
    sharedPadded_ = S > 0 ? roundUp(S, group_) : 0;
    gateCols_ = routed + (cfg.sharedGate ? 1 : 0);

    // Router (float32 always): [H][E+Z] plus the shared-expert gate as column E+Z, packed to [E+Z+1][H].
    std::vector<float> gate(static_cast<size_t>(H) * gateCols_);
    for (int h = 0; h < H; h++) {
      std::copy(w.gateWeight + static_cast<size_t>(h) * routed, w.gateWeight + static_cast<size_t>(h + 1) * routed,
                gate.begin() + static_cast<size_t>(h) * gateCols_);
      if (cfg.sharedGate) gate[static_cast<size_t>(h) * gateCols_ + routed] = w.sharedExpertGateWeight[h];
    }
    packStacked(gateT_, gate.data(), 1, H, gateCols_, gateCols_, H, 0, DType::kFloat32, stream_);
    if (cfg.useCorrectionBias) uploadF32(gateBias_, w.gateCorrectionBias, routed, stream_);
    if (cfg.routerBias) {
      // Added by the router GEMM's epilogue, before any scoring; the shared-expert gate's column has none.
      std::vector<float> b(gateCols_, 0.f);
      std::copy(w.gateBias, w.gateBias + routed, b.begin());
      uploadF32(routerBias_, b.data(), b.size(), stream_);
    }
    routing_.k = cfg.topK;
    routing_.nGroup = cfg.nGroup;
    routing_.topkGroup = cfg.topkGroup;
    routing_.routedScalingFactor = cfg.routedScalingFactor;
    routing_.renormalize = cfg.renormalize;
    routing_.renormalizeEpsilon = cfg.renormalizeEpsilon >= 0 ? cfg.renormalizeEpsilon
                                  : method == TopkMethod::kNoauxTc ? 1e-20f : 0.f;
    routing_.sparsemixer = method == TopkMethod::kSparsemixer;
    routing_.sparsemixerEpsilon = cfg.sparsemixerEpsilon;

    packStacked(upGate_, w.upGateProjWeight, E, D_, 2 * I, 2 * intermediatePadded_, D_, group_, elem, stream_);
    packStacked(down_, w.downProjWeight, E, I, D_, D_, intermediatePadded_, 0, elem, stream_);
    if (cfg.withBias) {
      std::vector<float> b(static_cast<size_t>(E) * 2 * intermediatePadded_);
      for (int e = 0; e < E; e++) {
        for (int n = 0; n < 2 * intermediatePadded_; n++) {
          const int col = packColumn(n, 2 * I, group_);
          b[static_cast<size_t>(e) * 2 * intermediatePadded_ + n] = col >= 0 ? w.upGateProjBias[static_cast<size_t>(e) * 2 * I + col] : 0.f;
        }
      }
      uploadF32(upGateBias_, b.data(), b.size(), stream_);
      uploadF32(downBias_, w.downProjBias, static_cast<size_t>(E) * D_, stream_);
    }
    if (L > 0) {
      packStacked(fc1T_, w.fc1LatentProjWeight, 1, H, L, L, H, 0, elem, stream_);
      packStacked(fc2T_, w.fc2LatentProjWeight, 1, L, H, H, L, 0, elem, stream_);
    }
    // int4 copies when the streaming kernel can read them: K and the groups in whole 32-code chunks.
    auto int4Fits = [&](const Int4Weight& q, int Kout) {
      return elem != DType::kFloat32 && q.codes && q.scales && q.groupSize > 0 && q.groupSize % 32 == 0 &&
             Kout % 32 == 0;
    };
    if (int4Fits(w.upGateProjInt4, D_) && int4Fits(w.downProjInt4, intermediatePadded_) && D_ % 8 == 0 && I % 8 == 0) {
      packInt4(upGateQ_, w.upGateProjInt4, E, D_, 2 * I, 2 * intermediatePadded_, D_, group_);
      packInt4(downQ_, w.downProjInt4, E, I, D_, D_, intermediatePadded_, 0);
    }
    // int8 copies for the tensor-core tiles: K and the groups in whole 32-code slots.
    auto int8Fits = [&](const Int8Weight& q, int Kout) {
      return elem != DType::kFloat32 && q.codes && q.scales && q.groupSize > 0 && q.groupSize % 32 == 0 &&
             Kout % 32 == 0;
    };
    if (!upGateQ_.present() && int8Fits(w.upGateProjInt8, D_) && int8Fits(w.downProjInt8, intermediatePadded_)) {
      packInt8(upGateQ8_, w.upGateProjInt8, E, D_, 2 * I, 2 * intermediatePadded_, D_, group_);
      packInt8(downQ8_, w.downProjInt8, E, I, D_, D_, intermediatePadded_, 0);
    }
    // mxfp4 copies: K in whole 32-code blocks, no source word mixing real and padding codes.
    if (elem != DType::kFloat32 && w.upGateProjMxfp4.codes && w.upGateProjMxfp4.scales && w.downProjMxfp4.codes &&
        w.downProjMxfp4.scales && D_ % 32 == 0 && intermediatePadded_ % 32 == 0 && I % 8 == 0) {
      packMxfp4(upGateFp4_, w.upGateProjMxfp4, E, D_, 2 * I, 2 * intermediatePadded_, D_, group_);
      packMxfp4(downFp4_, w.downProjMxfp4, E, I, D_, D_, intermediatePadded_, 0);
    }
    if (S > 0) {
      packStacked(sharedUpGate_, w.sharedUpGateProjWeight, 1, H, 2 * S, 2 * sharedPadded_, H, group_, elem, stream_);
      packStacked(sharedDown_, w.sharedDownProjWeight, 1, S, H, H, sharedPadded_, 0, elem, stream_);
    }
    MOE_CUDA(cudaStreamSynchronize(stream_));
  }
}

// [count][ceil(K/8)][N] codes and [count][G][N] scales / zeros -> [count][Nout][Kout/8] and [count][Nout][Kout/gs],
// output row n reading source column packColumn(n, N, group) (group 0: n itself). Rows past the source, and the
// words and groups past K, are zero codes with scale 0 (value 0 whatever the zero point). K % 8 == 0 here, so no
// source word mixes real and padding codes.
void MoeLayer::packInt4(Int4Device& dst, const Int4Weight& src, int count, int K, int N, int Nout, int Kout,
                        int group) {
  const int gs = src.groupSize, kw = K / 8, kwOut = Kout / 8, g = ceilDiv(K, gs), gOut = ceilDiv(Kout, gs);
  std::vector<int32_t> codes(static_cast<size_t>(count) * Nout * kwOut, 0);
  std::vector<float> scales(static_cast<size_t>(count) * Nout * gOut, 0.f);
  std::vector<float> zeros(src.zeros ? scales.size() : 0, 0.f);
  for (int e = 0; e < count; e++) {
    for (int n = 0; n < Nout; n++) {
      const int col = group > 0 ? packColumn(n, N, group) : (n < N ? n : -1);
      if (col < 0) continue;
      const size_t row = static_cast<size_t>(e) * Nout + n;
      for (int w = 0; w < kw; w++) codes[row * kwOut + w] = src.codes[(static_cast<size_t>(e) * kw + w) * N + col];
      for (int q = 0; q < g; q++) {
        scales[row * gOut + q] = src.scales[(static_cast<size_t>(e) * g + q) * N + col];
        if (src.zeros) zeros[row * gOut + q] = src.zeros[(static_cast<size_t>(e) * g + q) * N + col];
      }
    }
  }
  dst.groupSize = gs;
  dst.codes.ensure(codes.size() * 4);
  MOE_CUDA(cudaMemcpy(dst.codes.as(), codes.data(), codes.size() * 4, cudaMemcpyHostToDevice));
  dst.scales.ensure(scales.size() * 4);
  MOE_CUDA(cudaMemcpy(dst.scales.as(), scales.data(), scales.size() * 4, cudaMemcpyHostToDevice));
  if (!zeros.empty()) {
    dst.zeros.ensure(zeros.size() * 4);
    MOE_CUDA(cudaMemcpy(dst.zeros.as(), zeros.data(), zeros.size() * 4, cudaMemcpyHostToDevice));
  }
}

// [count][ceil(K/4)][N] codes and [count][G][N] scales -> [count][Nout][Kout/4] words and [count][Nout][Kout/gs]
// scales, output row n reading source column packColumn(n, N, group) (group 0: n itself). Within each 32-value slot
// word 2t + j holds the codes of k = 16j + 2t, 2t + 1, 2t + 8, 2t + 9 (lowest byte first): the four values thread t
// of an m16n8k16 mma needs for step j (gemm_mma_core.cuh, dequantInt8). Rows past the source and k past K are zero
// codes with scale 0.
void MoeLayer::packInt8(Int4Device& dst, const Int8Weight& src, int count, int K, int N, int Nout, int Kout,
                        int group) {
  const int gs = src.groupSize, kw = ceilDiv(K, 4), kwOut = Kout / 4, g = ceilDiv(K, gs), gOut = ceilDiv(Kout, gs);
  std::vector<int32_t> codes(static_cast<size_t>(count) * Nout * kwOut, 0);
  std::vector<float> scales(static_cast<size_t>(count) * Nout * gOut, 0.f);
  std::vector<uint8_t> column(static_cast<size_t>(kwOut) * 4);
  for (int e = 0; e < count; e++) {
    for (int n = 0; n < Nout; n++) {
      const int col = group > 0 ? packColumn(n, N, group) : (n < N ? n : -1);
      if (col < 0) continue;
      const size_t row = static_cast<size_t>(e) * Nout + n;
      std::fill(column.begin(), column.end(), 0);
      for (int w = 0; w < kw; w++) {
        const uint32_t word = static_cast<uint32_t>(src.codes[(static_cast<size_t>(e) * kw + w) * N + col]);
        for (int b = 0; b < 4 && 4 * w + b < K; b++) column[4 * w + b] = static_cast<uint8_t>(word >> (8 * b));
      }
      int32_t* out = codes.data() + row * kwOut;
      for (int slot = 0; slot < Kout / 32; slot++) {
        for (int j = 0; j < 2; j++) {
          for (int t = 0; t < 4; t++) {
            const uint8_t* c = column.data() + slot * 32 + 16 * j + 2 * t;
            out[slot * 8 + 2 * t + j] = static_cast<int32_t>(static_cast<uint32_t>(c[0]) | (static_cast<uint32_t>(c[1]) << 8) |
                                                            (static_cast<uint32_t>(c[8]) << 16) | (static_cast<uint32_t>(c[9]) << 24));
          }
        }
      }
      for (int q = 0; q < g; q++) scales[row * gOut + q] = src.scales[(static_cast<size_t>(e) * g + q) * N + col];
    }
  }
  dst.groupSize = gs;
  dst.codes.ensure(codes.size() * 4);
  MOE_CUDA(cudaMemcpy(dst.codes.as(), codes.data(), codes.size() * 4, cudaMemcpyHostToDevice));
  dst.scales.ensure(scales.size() * 4);
  MOE_CUDA(cudaMemcpy(dst.scales.as(), scales.data(), scales.size() * 4, cudaMemcpyHostToDevice));
}

// Codes as packInt4 copies them; block scales: E8M0 byte (e, g, n) -> 2^(b - 127) (b 0: the subnormal 2^-127; 255:
// NaN). Rows past the source and blocks past K get scale 0 and zero codes.
void MoeLayer::packMxfp4(Int4Device& dst, const Mxfp4Weight& src, int count, int K, int N, int Nout, int Kout,
                         int group) {
  std::vector<float> scales;
  const int g = ceilDiv(K, 32), nw = ceilDiv(N, 4);
  scales.resize(static_cast<size_t>(count) * g * N);
  for (int e = 0; e < count; e++) {
    for (int q = 0; q < g; q++) {
      for (int n = 0; n < N; n++) {
        const uint32_t word = static_cast<uint32_t>(src.scales[(static_cast<size_t>(e) * g + q) * nw + n / 4]);
        const int b = static_cast<int>((word >> (8 * (n % 4))) & 0xFFu);
        scales[(static_cast<size_t>(e) * g + q) * N + n] = b == 255 ? std::nanf("") : std::ldexp(1.f, b - 127);
      }
    }
  }
  const Int4Weight asInt4{src.codes, scales.data(), nullptr, 32};
  packInt4(dst, asInt4, count, K, N, Nout, Kout, group);
}

bool MoeLayer::nativeFormatsOff() {
  const char* v = std::getenv("TFJS_MOE_CUDA_FORMATS");
  return v != nullptr && std::strcmp(v, "copy") == 0;
}

MoeLayer::~MoeLayer() {
  try {
    forwardEnd();  // a split host forward left open: its output array is still the caller's
  } catch (...) {
  }
  (void)cudaStreamSynchronize(stream_);  // the stream may still run a forward that reads the weights
  for (auto& [t, g] : graphs_) (void)cudaGraphExecDestroy(g);
  for (cudaEvent_t e : trace_) {
    if (e != nullptr) (void)cudaEventDestroy(e);
  }
}

void MoeLayer::dropGraphs() {
  for (auto& [t, g] : graphs_) (void)cudaGraphExecDestroy(g);
  graphs_.clear();
}

size_t MoeLayer::residentBytes() const {
  return gateT_.bytes() + gateBias_.bytes() + routerBias_.bytes() + upGate_.bytes() + upGateBias_.bytes() + down_.bytes() +
         downBias_.bytes() + fc1T_.bytes() + fc2T_.bytes() + sharedUpGate_.bytes() + sharedDown_.bytes() +
         upGateQ_.codes.bytes() + upGateQ_.scales.bytes() + upGateQ_.zeros.bytes() + downQ_.codes.bytes() +
         downQ_.scales.bytes() + downQ_.zeros.bytes() + upGateQ8_.codes.bytes() + upGateQ8_.scales.bytes() +
         downQ8_.codes.bytes() + downQ8_.scales.bytes() + upGateFp4_.codes.bytes() + upGateFp4_.scales.bytes() +
         downFp4_.codes.bytes() + downFp4_.scales.bytes();
}

void MoeLayer::ensureWorkspace(int T) {
  if (T <= capT_) return;
  capT_ = -1;  // until every buffer below is allocated: a failed allocation must not leave a stale capacity
  dropGraphs();  // captured graphs hold the old pointers
  MOE_CUDA(cudaStreamSynchronize(stream_));
  const int cap = std::max(T, 1);
  const size_t E = cfg_.numExperts, k = cfg_.topK, H = cfg_.hidden, R = static_cast<size_t>(cap) * k;
  const size_t eb = dtypeBytes(cfg_.compute);
  dX_.ensure(cap * H * 4);
  dOut_.ensure(cap * H * 4);
  if (cfg_.compute != DType::kFloat32) xCompute_.ensure(cap * H * eb);
  logits_.ensure(static_cast<size_t>(cap) * gateCols_ * 4);
  // The router's split-K slabs: the most split x rows of any T up to the capacity, at the largest cap
  // (TFJS_MOE_CUDA_GATE_SPLIT_MAX only lowers it). Above 2^16 rows the split is 1.
  size_t slabRows = cap;
  for (int t = 1; t <= std::min(cap, 1 << 16); t++) {
    slabRows = std::max(slabRows, static_cast<size_t>(gateSplit(t, kGateSplitLimit)) * t);
  }
  gatePartial_.ensure(slabRows * gateCols_ * 4);
  ids_.ensure(R * 4);
  weights_.ensure(R * 4);
  sharedScale_.ensure(cap * 4);
  perm_.ensure((E + (E + 1) + kTileClasses * (E + 1) + R + R + E) * 4);
  // The fused decode kernels' completion counters (one for the route kernel, one per down GEMM column tile of at
  // least 16 columns): zero here, and each launch leaves them zero.
  counters_.ensure((1 + ceilDiv(D_, 16)) * sizeof(int));
  MOE_CUDA(cudaMemsetAsync(counters_.as(), 0, counters_.bytes(), stream_));
  h_.ensure(R * intermediatePadded_ * eb);
  y_.ensure(R * D_ * 4);
  if (cfg_.latent > 0) {
    latentF_.ensure(static_cast<size_t>(cap) * D_ * 4);
    latentE_.ensure(static_cast<size_t>(cap) * D_ * eb);
  }
  if (sharedPadded_ > 0) sharedHidden_.ensure(static_cast<size_t>(cap) * sharedPadded_ * eb);
  capT_ = cap;
}

// TFJS_MOE_CUDA_GATE_SPLIT_MAX (A/B timing, read at each launch): the router's largest split-K factor, 1 ..
// kGateSplitMax (session 5: 16, which left T = 256 at 32 blocks of 8 k tiles each).
static int gateSplitMaxEnv() {
  const char* v = std::getenv("TFJS_MOE_CUDA_GATE_SPLIT_MAX");
  const int n = v ? std::atoi(v) : 0;
  return n >= 1 && n <= kGateSplitLimit ? n : kGateSplitMax;
}

int MoeLayer::gateSplit(int T) const { return gateSplit(T, gateSplitMaxEnv()); }

int MoeLayer::gateSplit(int T, int maxSplit) const {
  if (T <= 32 || cfg_.hidden % 4 != 0) return 1;  // the few-rows kernel, or element-wise loads: no split
  const bool denseTiles = T >= kDenseF32MinRows && !legacyPrefillKernels();  // 128-row tiles (gemm_dense_f32.cuh)
  const int tiles = ceilDiv(T, denseTiles ? 128 : 64) * ceilDiv(gateCols_, 128);
  const int want = ceilDiv(2 * 132, tiles);  // about two blocks per SM of an H100
  // Slices of at least 32 k (one kSplitChunk) on the dense tiles; the older 64-row kernel keeps 128.
  const int split = std::max(1, std::min({want, cfg_.hidden / (denseTiles ? 32 : 128), denseTiles ? maxSplit : 16}));
  // No empty trailing slices (their blocks would only write zeros for the reduction to read).
  return denseTiles ? ceilDiv(cfg_.hidden, kSplitChunk(cfg_.hidden, split)) : split;
}

GemmProblem MoeLayer::dense(const void* A, int lda, const void* B, DType elem, int M, int N, int K) const {
  GemmProblem p;
  p.elem = elem;
  p.out = DType::kFloat32;
  p.A = A;
  p.lda = lda;
  p.B = B;
  p.M = M;
  p.N = N;
  p.K = K;
  p.ldc = N;
  p.group = swigluGroup(elem);
  p.rowsPerSegmentHint = M;
  return p;
}

// TFJS_MOE_CUDA_DECODE_COMBINE=add (A/B, read at each launch): the decode down GEMM adds its weighted rows into the
// output itself with float32 atomics (H200 batch B1, session 8, Qwen3-30B-A3B layer: bf16 T = 1 0.0414 -> 0.0398 ms,
// int4 0.0377 -> 0.0363). Not the default: the atomics' order changes from call to call, and decode, where a user
// compares runs token by token, stays bitwise reproducible with the combine kernel's slot order.
static bool decodeCombineAddEnv() {
  const char* v = std::getenv("TFJS_MOE_CUDA_DECODE_COMBINE");
  return v != nullptr && std::strcmp(v, "add") == 0;
}

// The largest T of a decode switch's value: 'name' alone = every decode T (up to maxT), 'name:N' = T <= N, else 0.
static int decodeSwitchTokens(const char* v, const char* name, int maxT) {
  const size_t n = std::strlen(name);
  if (v == nullptr || std::strncmp(v, name, n) != 0) return 0;
  if (v[n] == '\0') return maxT;
  return v[n] == ':' ? std::min(std::atoi(v + n + 1), maxT) : 0;
}

// TFJS_MOE_CUDA_DECODE_FRONT (A/B, read at each launch): 'route2' (or 'route2:N', T <= N) = the routing and the
// permute of up to 16 tokens as one block after the router GEMM (decodeRoutePermuteKernel): one launch fewer, the
// same sums. Unset: the routing and permute kernels.
static int decodeFrontTokens() { return decodeSwitchTokens(std::getenv("TFJS_MOE_CUDA_DECODE_FRONT"), "route2", 16); }

// TFJS_MOE_CUDA_DECODE_COMBINE=tail (or 'tail:N', T <= N; A/B, read at each launch): the combine in the decode down
// GEMM's last block per column tile (gemm_combine_tail.cuh, as MOE_CUDA_FUSE 'combine' does): no combine launch, the
// combine kernel's sums in slot order (bitwise the same output).
static int decodeCombineTailTokens() {
  return decodeSwitchTokens(std::getenv("TFJS_MOE_CUDA_DECODE_COMBINE"), "tail", kPdlMaxTokens);
}

// An A/B switch of the prefill path, read at each launch: `on` / `off` as the variable's value, else the default.
static bool envSwitch(const char* name, const char* on, const char* off, bool byDefault) {
  const char* v = std::getenv(name);
  if (v != nullptr && std::strcmp(v, on) == 0) return true;
  if (v != nullptr && std::strcmp(v, off) == 0) return false;
  return byDefault;
}

// TFJS_MOE_CUDA_GATE_REDUCE=topk|kernel: the router's split-K slabs are summed by the top-k kernel
// (launchTopkSelectSplitK, the same sums), or by a reduction kernel before it: one node less. H200 session 9,
// Qwen3-30B-A3B layer at T = 256 (graph replay): batch B1 bf16 0.3510 -> 0.3493 ms, int4 0.3005 -> 0.2980; batch B2
// 0.3530 -> 0.3533, 0.3006 -> 0.3002 (router + routing stages 0.034 -> 0.030 in both); T = 4096 within the spread.
constexpr bool kGateReduceInTopk = true;
// TFJS_MOE_CUDA_PDL_FRONT=1|0: above kPdlMaxTokens too, the split-K reduction, the routing and the permute are
// launched with programmatic dependent launch. Off: at most 0.001 ms at T = 256 in B1 and B2, no gain at 4096 (and
// the expert GEMMs stay without it: in B1 the up_gate GEMM under PDL cost the layer 5% at T = 4096).
constexpr bool kPdlFront = false;

void MoeLayer::enqueue(int T) {
  const int H = cfg_.hidden, E = cfg_.numExperts, k = cfg_.topK, R = T * k;
  const int routed = E + cfg_.zeroExperts;
  const DType elem = cfg_.compute;
  const float* routerBias = cfg_.routerBias ? routerBias_.as<float>() : nullptr;
  const bool half = elem != DType::kFloat32;
  const float* x = dX_.as<float>();
  float* out = dOut_.as<float>();
  const ExactDenseF32Scope exactDense(!denseWeightsFinite_);

  // 1. router logits in float32 (+ gate_bias; the shared-expert gate logit in column E+Z)
  GemmProblem gate = dense(x, H, gateT_.as(), DType::kFloat32, T, gateCols_, H);
  gate.C = logits_.as();
  gate.bias = routerBias;
  if (half) {
    // The expert input in the compute dtype: written by the router kernel itself at decode sizes.
    gate.aCopy = xCompute_.as();
    gate.aCopyElem = elem;
  }
  int* ids = ids_.as<int>();
  float* weights = weights_.as<float>();
  float* sharedScale = cfg_.sharedGate ? sharedScale_.as<float>() : nullptr;
  const float* corr = cfg_.useCorrectionBias ? gateBias_.as<float>() : nullptr;
  int* pb = perm_.as<int>();
  PermuteBuffers perm{pb, pb + E, pb + E + (E + 1), nullptr, nullptr, nullptr};
  perm.rowToPair = perm.tilePrefix + kTileClasses * (E + 1);
  perm.rowMap = perm.rowToPair + R;
  perm.scratch = perm.rowMap + R;
  // At decode sizes the down GEMM adds its weighted rows into the output itself (GemmProblem.combineAdd, float32
  // atomics on the mma.sync tiles; decodeCombineAddEnv) instead of the combine kernel; the one-block permute zeroes
  // the output first. Not with identity experts (their w x terms are the combine
  // kernel's) or latent projections (the output buffer is fc1's until the down GEMM).
  const bool decodeAdd = half && T <= kPdlMaxTokens && decodeCombineAddEnv() && cfg_.zeroExperts == 0 && cfg_.latent == 0 &&
                         R <= 256 && E <= 2048 && !tuning().fuseCombine && tuning().decodeGemm != DecodeGemm::kStream4 &&
                         tuning().decodeGemm != DecodeGemm::kStream8;
  if (decodeAdd) {
    perm.zeroOut = out;
    perm.zeroFloats = static_cast<long long>(T) * D_;
  }
  const bool noaux = cfg_.topkMethod == TopkMethod::kNoauxTc;
  DecodeRouteArgs route;
  route.routed = routed;
  route.numExperts = E;
  route.corr = corr;
  route.rp = routing_;
  route.noaux = noaux;
  route.ids = ids;
  route.weights = weights;
  route.sharedGate = sharedScale;
  route.R = R;
  route.perm = perm;
  route.counter = counters_.as<int>();
  const int split = gateSplit(T);
  // 1-3 in one kernel at decode sizes (no split): the router GEMM's last block routes and permutes.
  const bool fusedRoute = split == 1 && tuning().fuseRoute && marks_ == nullptr && decodeRouteFits(gate, route);
  const bool reduceInTopk =
      split > 1 && !noaux && envSwitch("TFJS_MOE_CUDA_GATE_REDUCE", "topk", "kernel", kGateReduceInTopk);
  // Every launch after the router GEMM follows a kernel on this stream: they may use programmatic dependent launch,
  // which hides part of the gap between consecutive small kernels at decode sizes (H100, bf16 T=1: 0.0547 -> 0.0528
  // ms graph, 0.0620 -> 0.0557 stream). At T=256 it cost 2% (0.5295 -> 0.5410: the next GEMM's blocks take SM slots
  // early and wait), so only for few tokens (the front's small kernels: kPdlFront). Not while profiling: the stage
  // events sit between the kernels there.
  const bool pdlFront =
      marks_ == nullptr && (T <= kPdlMaxTokens || envSwitch("TFJS_MOE_CUDA_PDL_FRONT", "1", "0", kPdlFront));
  if (fusedRoute) {
    launchDecodeRoute(gate, route, stream_);
  } else {
    if (split > 1) {
      // Few output tiles (N = E is small): slice K so the router fills the GPU; partial sums reduced in order.
      gate.C = gatePartial_.as();
      gate.kSplit = split;
      gate.bias = nullptr;  // added once, by the reduction
      gate.rowsPerSegmentHint = 64;
      launchGroupedGemm(gate, stream_);
      if (!reduceInTopk) {
        PdlScope front(pdlFront);
        launchSplitKReduce(gatePartial_.as<float>(), split, T, gateCols_, routerBias, logits_.as<float>(), stream_);
      }
    } else {
      launchGroupedGemm(gate, stream_);
    }
  }
  PdlScope pdl(marks_ == nullptr && T <= kPdlMaxTokens);
  const bool routePermute = !fusedRoute && split == 1 && T <= decodeFrontTokens() && decodeRoutePermuteFits(T, route);
  if (routePermute) {
    mark("router GEMM");  // the stage profile's "routing" is then routing + permute, its "permute" empty
    launchDecodeRoutePermute(logits_.as<float>(), T, gateCols_, route, stream_);
    mark("routing");
  } else if (!fusedRoute) {
    PdlScope front(pdlFront);
    mark("router GEMM");
    // 2. routing
    if (noaux) {
      launchMoeScores(logits_.as<float>(), T, routed, gateCols_, corr, routing_, nullptr, ids, weights, sharedScale,
                      stream_);
    } else if (reduceInTopk) {
      launchTopkSelectSplitK(gatePartial_.as<float>(), split, routerBias, logits_.as<float>(), T, routed, gateCols_,
                             corr, routing_, ids, weights, sharedScale, stream_);
    } else {
      launchTopkSelect(logits_.as<float>(), T, routed, gateCols_, corr, routing_, ids, weights, sharedScale, stream_);
    }
    mark("routing");
    // 3. permute (alignment 1: tiles handle partial segments); identity experts' ids (>= E) get no row
    launchPermute(ids, T, k, E, 1, R, perm, stream_);
  }
  mark("permute");
  // 4. expert input in the compute dtype (latent: fc1 first)
  const void* xe = half ? xCompute_.as() : x;  // converted with the router GEMM
  const void* expertIn = xe;
  if (cfg_.latent > 0) {
    GemmProblem fc1 = dense(xe, H, fc1T_.as(), elem, T, D_, H);
    fc1.C = latentF_.as();
    launchGroupedGemm(fc1, stream_);
    if (half) {
      launchConvert(latentF_.as<float>(), latentE_.as(), elem, static_cast<long long>(T) * D_, stream_);
      expertIn = latentE_.as();
    } else {
      expertIn = latentF_.as();
    }
  }

  mark("convert/latent");
  // 5. experts: up_gate GEMM with the activation fused, times the routing weight on the activation ('activation')
  // or on the GEMM's input rows ('input'), then the down GEMM
  const int hint = std::max(1, 2 * R / std::max(1, std::min(E, R)));
  GemmProblem up;
  up.elem = elem;
  up.out = elem;
  up.A = expertIn;
  up.lda = D_;
  up.aRowIndex = perm.rowToPair;
  up.aRowDiv = k;
  up.B = upGate_.as();
  up.bias = cfg_.withBias ? upGateBias_.as<float>() : nullptr;
  up.C = h_.as();
  up.ldc = intermediatePadded_;
  const bool weightsApplied = cfg_.routingWeightOn != RoutingWeightOn::kOutput;
  up.scale = weightsApplied ? weights : nullptr;
  up.scaleIndex = perm.rowToPair;
  up.scaleInput = cfg_.routingWeightOn == RoutingWeightOn::kInput;
  up.activation = cfg_.activation;
  up.M = R;
  up.N = 2 * intermediatePadded_;
  up.K = D_;
  up.seg = SegmentView{perm.offsets, perm.tilePrefix, E};
  up.group = group_;
  up.epilogue = Epilogue::kSwiglu;
  up.rowsPerSegmentHint = hint;
  auto useInt4 = [](GemmProblem& g, const Int4Device& q) {
    if (!q.present()) return;
    g.bInt4 = q.codes.as<int32_t>();
    g.bScales = q.scales.as<float>();
    g.bZeros = q.zeros.bytes() ? q.zeros.as<float>() : nullptr;
    g.groupSize = q.groupSize;
  };
  useInt4(up, upGateQ_);
  const bool int8Codes = upGateQ8_.present() && !nativeFormatsOff();
  auto useInt8 = [&](GemmProblem& g, const Int4Device& q) {
    if (!int8Codes) return;
    g.bInt8 = q.codes.as<int32_t>();
    g.bScales = q.scales.as<float>();
    g.bZeros = nullptr;
    g.groupSize = q.groupSize;
  };
  useInt8(up, upGateQ8_);
  const bool fp4Codes = upGateFp4_.present() && !nativeFormatsOff();
  auto useFp4 = [&](GemmProblem& g, const Int4Device& q) {
    if (!fp4Codes) return;
    g.bFp4 = q.codes.as<int32_t>();
    g.bScales = q.scales.as<float>();
    g.bZeros = nullptr;
    g.groupSize = 32;
  };
  useFp4(up, upGateFp4_);
  // With the down GEMM's L2 prefetch (below): the up_gate weights, read once, must not evict what it asked for.
  const long long downBytes = static_cast<long long>(std::min(E, R)) * D_ * intermediatePadded_ * dtypeBytes(elem);
  const bool prefetchDown = l2Prefetch_ == 1 && half && tuning().fuseCombine && marks_ == nullptr && T <= kPdlMaxTokens &&
                            pdlSupported() && downBytes <= (32ll << 20);
  up.bStreamOnce = prefetchDown;
  if (l2Prefetch_ == 2 && half && marks_ == nullptr && T <= kPdlMaxTokens && downBytes <= (32ll << 20)) {
    const bool codes = downQ_.present() && tuning().int4Mma;
    // bytes per weight, doubled: int4 1, int8 2, the copy 2 * dtypeBytes
    // (this is the one-token case, where the mxfp4 GEMMs read the copy unless TFJS_MOE_CUDA_FORMATS says otherwise:
    // kMxfp4MmaLimits in grouped_gemm_launch.cuh)
    const char* formats = std::getenv("TFJS_MOE_CUDA_FORMATS");
    const bool fp4Down = fp4Codes && formats != nullptr && (std::strcmp(formats, "mma96") == 0 || std::strcmp(formats, "mma8") == 0);
    up.prefetchNext = codes ? downQ_.codes.as() : int8Codes ? downQ8_.codes.as() : fp4Down ? downFp4_.codes.as() : down_.as();
    up.prefetchNextBytes = static_cast<long long>(D_) * intermediatePadded_ *
                           (codes || fp4Down ? 1 : int8Codes ? 2 : 2 * dtypeBytes(elem)) / 2;
    up.bStreamOnce = true;
  }
  launchGroupedGemm(up, stream_);

  mark("up_gate GEMM + SwiGLU");
  GemmProblem dn = up;
  dn.out = DType::kFloat32;
  dn.A = h_.as();
  dn.lda = intermediatePadded_;
  dn.aRowIndex = nullptr;
  dn.B = down_.as();
  dn.bias = nullptr;  // added, weighted, in the combine
  dn.C = y_.as();
  dn.ldc = D_;
  dn.scale = nullptr;
  dn.scaleIndex = nullptr;
  dn.scaleInput = false;
  dn.N = D_;
  dn.K = intermediatePadded_;
  dn.epilogue = Epilogue::kStore;
  dn.bInt4 = nullptr;
  dn.bInt8 = nullptr;
  dn.bFp4 = nullptr;
  dn.bStreamOnce = false;
  dn.prefetchNext = nullptr;
  // The segments were written before the up_gate GEMM began and nothing writes B: under PDL the down GEMM's blocks
  // start loading weights while up_gate finishes (MOE_CUDA_GEMM_TILES 'no-preload' turns it off).
  dn.preloadB = preloadDecodeDown() && T <= kPdlMaxTokens;
  useInt4(dn, downQ_);
  useInt8(dn, downQ8_);
  useFp4(dn, downFp4_);
  float* routedOut = cfg_.latent > 0 ? latentF_.as<float>() : out;
  // 6. combine (+ weighted down bias, + w * x for identity experts), then the latent fc2. At the fewest tokens (each expert's weights read by
  // one token) the down GEMM is token-owned and does the combine itself: one kernel and no [R, D] round trip.
  GemmProblem owned = dn;
  owned.epilogue = Epilogue::kCombine;
  owned.M = T;
  owned.C = routedOut;
  owned.bias = cfg_.withBias ? downBias_.as<float>() : nullptr;
  owned.pairRow = perm.rowMap;
  owned.pairExpert = ids;
  owned.pairWeight = weights;
  owned.topK = k;
  owned.aRows = R;
  owned.weightsApplied = weightsApplied;
  owned.identityX = cfg_.zeroExperts > 0 ? x : nullptr;
  if (half && static_cast<long long>(R) * kTokenOwnedDownFactor <= E && combineInGemmSupported(owned)) {
    launchGroupedGemm(owned, stream_);
    mark("down GEMM");
  } else if (half && (tuning().fuseCombine || T <= decodeCombineTailTokens()) && marks_ == nullptr && T <= kPdlMaxTokens) {
    // The combine in the down GEMM's last tile per column (no combine launch).
    GemmProblem tail = dn;
    // TFJS_MOE_CUDA_L2_PREFETCH=1 (A/B): the down GEMM's blocks, launched early under PDL while the up_gate GEMM
    // streams, ask L2 for their weights when all active experts' down weights fit in about two thirds of L2.
    tail.prefetchB = prefetchDown;
    tail.combineOut = routedOut;
    tail.combineBias = owned.bias;
    tail.combineTokens = T;
    tail.tileCounters = counters_.as<int>() + 1;
    tail.pairRow = perm.rowMap;
    tail.pairExpert = ids;
    tail.pairWeight = weights;
    tail.topK = k;
    tail.weightsApplied = weightsApplied;
    tail.identityX = owned.identityX;
    launchGroupedGemm(tail, stream_);
    mark("down GEMM");
  } else if (decodeAdd) {
    GemmProblem add = dn;
    add.combineAdd = routedOut;
    add.rowToPair = perm.rowToPair;
    add.pairWeight = weights;
    add.topK = k;
    add.weightsApplied = weightsApplied;
    add.bias = cfg_.withBias ? downBias_.as<float>() : nullptr;
    launchGroupedGemm(add, stream_);
    mark("down GEMM");
  } else if (!downCombineAdd(half, T, routedOut, dn, perm.rowToPair, weights, weightsApplied)) {
    launchGroupedGemm(dn, stream_);
    mark("down GEMM");
    launchCombine(y_.as<float>(), R, D_, perm.rowMap, weights, ids, T, k, E,
                  cfg_.withBias ? downBias_.as<float>() : nullptr, weightsApplied, cfg_.zeroExperts > 0 ? x : nullptr,
                  routedOut, stream_);
  }
  if (cfg_.latent > 0) {
    const void* a = routedOut;
    if (half) {
      launchConvert(routedOut, latentE_.as(), elem, static_cast<long long>(T) * D_, stream_);
      a = latentE_.as();
    }
    GemmProblem fc2 = dense(a, D_, fc2T_.as(), elem, T, H, D_);
    fc2.C = out;
    launchGroupedGemm(fc2, stream_);
  }

  mark("combine/latent");
  // 7. shared experts on the full-width x; the sigmoid gate is linear in the down projection, so it scales
  // the SwiGLU rows.
  if (sharedPadded_ > 0) {
    GemmProblem su = dense(xe, H, sharedUpGate_.as(), elem, T, 2 * sharedPadded_, H);
    su.out = elem;
    su.C = sharedHidden_.as();
    su.ldc = sharedPadded_;
    su.scale = sharedScale;
    su.epilogue = Epilogue::kSwiglu;
    launchGroupedGemm(su, stream_);
    GemmProblem sd = dense(sharedHidden_.as(), sharedPadded_, sharedDown_.as(), elem, T, H, sharedPadded_);
    sd.C = out;
    sd.epilogue = Epilogue::kAccumulate;
    launchGroupedGemm(sd, stream_);
  }
  mark("shared experts");
}

// TFJS_MOE_CUDA_DOWN_COMBINE (A/B timing, read at each launch): '0' keeps the prefill down GEMM's [R, D] float32
// rows and the combine kernel; unset: the wgmma down GEMM adds its weighted rows into the output itself.
static bool downCombineEnv() {
  const char* v = std::getenv("TFJS_MOE_CUDA_DOWN_COMBINE");
  return v == nullptr || v[0] != '0';
}

bool MoeLayer::downCombineAdd(bool half, int T, float* routedOut, const GemmProblem& dn, const int* rowToPair,
                              const float* weights, bool weightsApplied) {
  // Identity experts' w * x terms are the combine kernel's; decode sizes keep their own fused paths.
  if (!half || cfg_.zeroExperts > 0 || T <= kPdlMaxTokens || !downCombineEnv()) return false;
  GemmProblem add = dn;
  add.combineAdd = routedOut;
  add.rowToPair = rowToPair;
  add.pairWeight = weights;
  add.topK = cfg_.topK;
  add.weightsApplied = weightsApplied;
  add.bias = cfg_.withBias ? downBias_.as<float>() : nullptr;
  // Zeroed first: tokens without rows (every slot an invalid id) keep 0. Not where the wgmma GEMM declines (int4
  // codes at up to 96 rows per expert: the mma.sync tiles and the combine kernel).
  if (!sm90GemmTakes(add)) return false;
  MOE_CUDA(cudaMemsetAsync(routedOut, 0, static_cast<size_t>(T) * D_ * sizeof(float), stream_));
  if (!launchGroupedGemmSm90(add, stream_)) throw std::logic_error("the wgmma GEMM declined a problem it takes");
  mark("down GEMM");
  return true;
}

void MoeLayer::mark(const char* stage) {
  if (marks_ == nullptr) return;
  cudaEvent_t e;
  MOE_CUDA(cudaEventCreate(&e));
  marks_->emplace_back(stage, e);
  MOE_CUDA(cudaEventRecord(e, stream_));
}

std::vector<std::pair<std::string, float>> MoeLayer::profile(const float* x, int T, int iters) {
  forwardEnd();  // a split host forward left open completes first
  ensureWorkspace(std::max(T, 1));
  MOE_CUDA(cudaMemcpyAsync(dX_.as(), x, static_cast<size_t>(T) * cfg_.hidden * sizeof(float),
                           cudaMemcpyHostToDevice, stream_));
  enqueue(T);  // warm-up
  std::vector<std::vector<float>> perStage;
  std::vector<std::string> names;
  std::vector<std::pair<std::string, cudaEvent_t>> marks;
  for (int it = 0; it < iters; it++) {
    marks.clear();
    marks_ = &marks;
    try {
      mark("start");
      enqueue(T);
    } catch (...) {
      marks_ = nullptr;
      for (auto& m : marks) (void)cudaEventDestroy(m.second);
      throw;
    }
    marks_ = nullptr;
    MOE_CUDA(cudaStreamSynchronize(stream_));
    if (perStage.empty()) perStage.resize(marks.size() - 1);
    for (size_t i = 1; i < marks.size(); i++) {
      float ms = 0.f;
      MOE_CUDA(cudaEventElapsedTime(&ms, marks[i - 1].second, marks[i].second));
      perStage[i - 1].push_back(ms);
      if (it == 0) names.push_back(marks[i].first);
    }
    for (auto& m : marks) (void)cudaEventDestroy(m.second);
  }
  std::vector<std::pair<std::string, float>> out;
  for (size_t i = 0; i < names.size(); i++) {
    auto v = perStage[i];
    std::sort(v.begin(), v.end());
    out.emplace_back(names[i], v[v.size() / 2]);
  }
  return out;
}

void MoeLayer::run(int T, bool useGraph, const float* hostIn, float* hostOut) {
  if (!useGraph) l2Prefetch_ = l2PrefetchEnv();
  const long long n = static_cast<long long>(T) * cfg_.hidden;
  auto body = [&] {
    if (hostIn != nullptr) launchDeviceCopy(hostIn, dX_.as<float>(), n, stream_);
    enqueue(T);
    if (hostOut != nullptr) launchDeviceCopy(dOut_.as<float>(), hostOut, n, stream_);
  };
  if (!useGraph) {
    body();
    return;
  }
  if (graphsTuning_ != tuning().generation || l2Prefetch_ != l2PrefetchEnv() ||
      envSwitches_ != kernelEnvSwitches()) {  // captured with other settings
    dropGraphs();
    graphsTuning_ = tuning().generation;
    l2Prefetch_ = l2PrefetchEnv();
    envSwitches_ = kernelEnvSwitches();
  }
  const int key = hostIn != nullptr ? ~T : T;  // the copying graphs under negative keys
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    body();  // one eager run first: one-time setup (smem opt-ins) stays out of the capture
    cudaGraph_t graph = nullptr;
    MOE_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      body();
    } catch (...) {
      (void)cudaStreamEndCapture(stream_, &graph);
      if (graph) (void)cudaGraphDestroy(graph);
      throw;
    }
    MOE_CUDA(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t st = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    MOE_CUDA(st);
    it = graphs_.emplace(key, exec).first;
    return;  // the eager run already produced the output
  }
  MOE_CUDA(cudaGraphLaunch(it->second, stream_));
}

// The A/B environment switches the launchers read at each launch (moe_kernels.h, gemm_sm90.cu).
std::string MoeLayer::kernelEnvSwitches() {
  std::string key;
  for (const char* name : {"TFJS_MOE_CUDA_PREFILL_LEGACY", "TFJS_MOE_CUDA_WGMMA_INT4", "TFJS_MOE_CUDA_DENSE_F32",
                           "TFJS_MOE_CUDA_SM90_TILES", "TFJS_MOE_CUDA_SM90_TABLE", "TFJS_MOE_CUDA_INT4_SCALE_LOADS",
                           "TFJS_MOE_CUDA_GATE_SPLIT_MAX", "TFJS_MOE_CUDA_DOWN_COMBINE", "TFJS_MOE_CUDA_FORMATS",
                           "TFJS_MOE_CUDA_INT4_TILES", "TFJS_MOE_CUDA_CODE_PREFETCH",
                           "TFJS_MOE_CUDA_PERMUTE_VEC",
                           "TFJS_MOE_CUDA_FRAG_BUFS", "TFJS_MOE_CUDA_DECODE_STAGES",
                           "TFJS_MOE_CUDA_DECODE_GRID", "TFJS_MOE_CUDA_DECODE_BN",
                           "TFJS_MOE_CUDA_DECODE_COMBINE", "TFJS_MOE_CUDA_DECODE_DOWN", "TFJS_MOE_CUDA_DECODE_FRONT",
                           "TFJS_MOE_CUDA_GATE_REDUCE", "TFJS_MOE_CUDA_PDL_FRONT"}) {
    const char* v = std::getenv(name);
    key += v ? v : "-";
    key += ';';
  }
  return key;
}

// Unset or '2' (default): the up_gate GEMM's blocks ask L2 for the down weights of their experts when those fit (one
// token; H200 batch I: T = 1 0.0446 -> 0.0424 ms). '1': instead the down GEMM's own blocks ask (with the combine
// tail; measured no faster). '0': neither. A/B switches.
int MoeLayer::l2PrefetchEnv() {
  const char* v = std::getenv("TFJS_MOE_CUDA_L2_PREFETCH");
  return v == nullptr || v[0] == '\0' ? 2 : v[0] == '1' ? 1 : v[0] == '2' ? 2 : 0;
}

void MoeLayer::forward(const float* x, int T, float* out, int* ids, bool useGraph, HostCopy copy) {
  forwardBegin(x, T, out, ids, useGraph, copy);
  forwardEnd();
}

void MoeLayer::forwardBegin(const float* x, int T, float* out, int* ids, bool useGraph, HostCopy copy) {
  forwardEnd();  // one left open (its caller failed in between) ends first: its output is complete before this starts
  if (T == 0) return;
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  Pending p;
  p.t0 = Clock::now();
  ensureWorkspace(T);
  const size_t bytes = static_cast<size_t>(T) * cfg_.hidden * sizeof(float);
  p.out = out;
  p.bytes = bytes;
  const char* traceEnv = std::getenv("TFJS_MOE_CUDA_TRACE");
  const bool trace = traceEnv != nullptr && traceEnv[0] == '1';
  p.trace = trace;
  if (trace && trace_[0] == nullptr) {
    for (cudaEvent_t& e : trace_) MOE_CUDA(cudaEventCreate(&e));
  }
  if (trace) MOE_CUDA(cudaEventRecord(trace_[0], stream_));
  // A fresh output array's page faults start now on helper threads, overlapping the upload and the kernels
  // (TFJS_MOE_CUDA_PREFAULT=late: only once the download is enqueued, benchmark A/B).
  const char* prefaultEnv = std::getenv("TFJS_MOE_CUDA_PREFAULT");
  // TFJS_MOE_CUDA_REGISTER='in' / 'out' / 'in,out' (benchmark A/B): page-lock the caller's large x / y for this
  // call (cudaHostRegister) and copy by DMA straight from / into them instead of through the staging buffers.
  const char* regEnv = std::getenv("TFJS_MOE_CUDA_REGISTER");
  const bool large = copy == HostCopy::kStaged && bytes >= (size_t(1) << 20);
  const bool regIn = large && regEnv != nullptr && std::strstr(regEnv, "in") != nullptr;
  const bool regOut = large && regEnv != nullptr && std::strstr(regEnv, "out") != nullptr;
  // Small: x and y pass through mapped host blocks that the graph's first and last kernels read and write (one
  // launch, one wait, no DMA); the host copies them in and out (a few KiB).
  if (copy == HostCopy::kStaged && useGraph && !regIn && !regOut && bytes <= mappedCopyMaxBytes()) {
    // Sized once for the largest mapped forward: the graphs hold the blocks, so a move drops them.
    const size_t cap = std::max(bytes, mappedCopyMaxBytes());
    if (mappedIn_.ensure(cap) | mappedOut_.ensure(cap)) dropGraphs();
    if (prefaultEnv == nullptr || std::strcmp(prefaultEnv, "late") != 0) download_.prefault(out, bytes);
    try {
      std::memcpy(mappedIn_.host(), x, bytes);
      p.t1 = Clock::now();
      if (trace) MOE_CUDA(cudaEventRecord(trace_[1], stream_));
      run(T, true, static_cast<const float*>(mappedIn_.device()), static_cast<float*>(mappedOut_.device()));
      if (trace) MOE_CUDA(cudaEventRecord(trace_[2], stream_));
      p.t2 = Clock::now();
      if (ids) {
        MOE_CUDA(cudaMemcpyAsync(ids, ids_.as(), static_cast<size_t>(T) * cfg_.topK * sizeof(int),
                                 cudaMemcpyDeviceToHost, stream_));
      }
      if (trace) MOE_CUDA(cudaEventRecord(trace_[3], stream_));
    } catch (...) {
      download_.run(out, dOut_.as(), 0, out, stream_);  // waits for the prefault (it writes into out)
      throw;
    }
    download_.begin(out, dOut_.as(), 0, out, stream_);  // end(): the stream's end, then the prefault's
    p.mapped = true;
    pending_ = p;
    return;
  }
  const auto r0 = Clock::now();
  if (regIn) MOE_CUDA(cudaHostRegister(const_cast<float*>(x), bytes, cudaHostRegisterDefault));
  if (regOut) {
    const cudaError_t st = cudaHostRegister(out, bytes, cudaHostRegisterDefault);
    if (st != cudaSuccess && regIn) (void)cudaHostUnregister(const_cast<float*>(x));
    MOE_CUDA(st);
  }
  timings_.registerMs = ms(r0, Clock::now());
  // Unregistered after the stream is done with them (forwardEnd, or here on an error).
  p.regX = regIn ? x : nullptr;
  p.regOut = regOut ? out : nullptr;
  auto unregister = [&] {
    if (p.regX != nullptr) (void)cudaHostUnregister(const_cast<float*>(p.regX));
    if (p.regOut != nullptr) (void)cudaHostUnregister(p.regOut);
  };
  if (copy == HostCopy::kStaged && !regOut && (prefaultEnv == nullptr || std::strcmp(prefaultEnv, "late") != 0)) {
    download_.prefault(out, bytes);
  }
  try {
    if (copy == HostCopy::kPageable) {
      MOE_CUDA(cudaMemcpyAsync(dX_.as(), x, bytes, cudaMemcpyHostToDevice, stream_));
    } else {
      uploadStaged(dX_.as(), x, bytes, stream_, staging_);
    }
    p.t1 = Clock::now();
    if (trace) MOE_CUDA(cudaEventRecord(trace_[1], stream_));
    run(T, useGraph);
    if (trace) MOE_CUDA(cudaEventRecord(trace_[2], stream_));
    p.t2 = Clock::now();
    if (ids) {
      MOE_CUDA(cudaMemcpyAsync(ids, ids_.as(), static_cast<size_t>(T) * cfg_.topK * sizeof(int),
                               cudaMemcpyDeviceToHost, stream_));
    }
    if (copy == HostCopy::kPageable) {
      MOE_CUDA(cudaMemcpyAsync(out, dOut_.as(), bytes, cudaMemcpyDeviceToHost, stream_));
      if (trace) MOE_CUDA(cudaEventRecord(trace_[3], stream_));
      download_.begin(out, dOut_.as(), 0, out, stream_);  // end(): the stream's end
    } else {
      // Chunked: each chunk copied out of pinned landing once its DMA is done, into pages faulted in ahead.
      void* landing = copy == HostCopy::kStaged && !regOut ? outStaging_.ensure(bytes) : out;
      download_.begin(out, dOut_.as(), bytes, landing, stream_, trace ? trace_[3] : nullptr);
    }
  } catch (...) {
    download_.run(out, dOut_.as(), 0, out, stream_);  // waits for the stream and the prefault (it writes into out)
    unregister();
    throw;
  }
  pending_ = p;
}

void MoeLayer::forwardEnd() {
  if (!pending_.active()) return;
  const Pending p = pending_;
  pending_ = Pending();
  struct Unregister {  // after the stream is done with them (download_.end() synchronizes, also when it throws)
    const float* x;
    float* out;
    ~Unregister() {
      if (x != nullptr) (void)cudaHostUnregister(const_cast<float*>(x));
      if (out != nullptr) (void)cudaHostUnregister(out);
    }
  } unregister{p.regX, p.regOut};
  download_.end();
  if (p.mapped) std::memcpy(p.out, mappedOut_.host(), p.bytes);
  finishTimings(p.t0, p.t1, p.t2, std::chrono::steady_clock::now(), p.trace);
}

void MoeLayer::finishTimings(std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t1,
                             std::chrono::steady_clock::time_point t2, std::chrono::steady_clock::time_point t3,
                             bool trace) {
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  timings_.uploadHostMs = ms(t0, t1);
  timings_.launchMs = ms(t1, t2);
  timings_.waitMs = ms(t1, t3);
  timings_.copyOutMs = 0;
  timings_.prefaultMs = download_.lastPrefaultMs();
  timings_.prefaultWaitMs = download_.lastPrefaultWaitMs();
  timings_.gpuUploadMs = timings_.gpuKernelMs = timings_.gpuDownloadMs = -1;
  if (trace) {
    float a = 0, k = 0, d = 0;
    MOE_CUDA(cudaEventElapsedTime(&a, trace_[0], trace_[1]));
    MOE_CUDA(cudaEventElapsedTime(&k, trace_[1], trace_[2]));
    MOE_CUDA(cudaEventElapsedTime(&d, trace_[2], trace_[3]));
    timings_.gpuUploadMs = a;
    timings_.gpuKernelMs = k;
    timings_.gpuDownloadMs = d;
  }
}

void MoeLayer::forwardDevice(const float* x, int T, float* out, int* ids, bool useGraph) {
  forwardEnd();  // a split host forward left open completes first
  if (T == 0) return;
  ensureWorkspace(T);
  // The graphs read dX_ and write dOut_; two device copies (16 us each at T = 4096) keep one graph per T. By
  // default they are kernels; TFJS_MOE_CUDA_DEVICE_COPY=memcpy (A/B) enqueues them as cudaMemcpyAsync instead.
  const long long n = static_cast<long long>(T) * cfg_.hidden;
  const char* copyEnv = std::getenv("TFJS_MOE_CUDA_DEVICE_COPY");
  const bool byMemcpy = copyEnv != nullptr && std::strcmp(copyEnv, "memcpy") == 0;
  auto copy = [&](float* dst, const float* src) {
    if (byMemcpy) MOE_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    else launchDeviceCopy(src, dst, n, stream_);
  };
  copy(dX_.as<float>(), x);
  run(T, useGraph);
  copy(out, dOut_.as<float>());
  if (ids) {
    MOE_CUDA(cudaMemcpyAsync(ids, ids_.as(), static_cast<size_t>(T) * cfg_.topK * sizeof(int),
                             cudaMemcpyDeviceToHost, stream_));
    MOE_CUDA(cudaStreamSynchronize(stream_));
  }
}

std::vector<float> MoeLayer::benchmark(const float* x, int T, int warmup, int iters, bool useGraph) {
  forwardEnd();  // a split host forward left open completes first
  ensureWorkspace(std::max(T, 1));
  MOE_CUDA(cudaMemcpyAsync(dX_.as(), x, static_cast<size_t>(T) * cfg_.hidden * sizeof(float),
                           cudaMemcpyHostToDevice, stream_));
  for (int i = 0; i < warmup; i++) run(T, useGraph);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) MOE_CUDA(cudaEventCreate(&e));
  std::vector<float> ms(iters);
  try {
    for (int i = 0; i < iters; i++) {
      MOE_CUDA(cudaEventRecord(ev[2 * i], stream_));
      run(T, useGraph);
      MOE_CUDA(cudaEventRecord(ev[2 * i + 1], stream_));
    }
    MOE_CUDA(cudaStreamSynchronize(stream_));
    for (int i = 0; i < iters; i++) MOE_CUDA(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  } catch (...) {
    for (auto& e : ev) (void)cudaEventDestroy(e);
    throw;
  }
  for (auto& e : ev) (void)cudaEventDestroy(e);
  return ms;
}

}  // namespace moe
