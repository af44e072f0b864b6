// Standalone check + timing of the layer's prefill kernels around the expert GEMMs: the dense float32 GEMM of the
// router (gemm_dense_f32.cuh: split-K, bias, the half copy of x), the one-pass permute and the vectorized combine,
// against float64 / exact host references on random data (random shapes, invalid ids, identity slots, several
// chunks), then CUDA-event timing at the Qwen3-30B-A3B T = 4096 and 256 shapes. With
// TFJS_MOE_CUDA_PREFILL_LEGACY=1 the same calls run the kernels from before (the timing's "before").
// Build (no GPU needed; the other objects from `TFJS_MOE_CUDA_ARCHS=90 node scripts/build-cuda.mjs`, build/cuda-obj):
//   nvcc -std=c++17 -O3 -Isrc/kernels/cuda -gencode arch=compute_90,code=sm_90 bench/cuda_prefill_harness.cu \
//     build/cuda-obj/{gemm_f32,permute,elementwise}.cu.o -o prefill_harness
// (the half-precision GEMMs are not linked: the stubs below refuse them, nothing here calls them)
// Run: ./prefill_harness [--check-only] [--small] (compute-sanitizer: small cases) [--time-only]. Exit 1 on a failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "moe_kernels.h"

namespace moe {
// gemm_f32.cu's element-type dispatch names these; the harness runs float32 GEMMs only.
void launchGroupedGemmBf16(const GemmProblem&, cudaStream_t) { throw std::logic_error("harness: no bf16 GEMM linked"); }
void launchGroupedGemmF16(const GemmProblem&, cudaStream_t) { throw std::logic_error("harness: no f16 GEMM linked"); }
bool combineSupportedBf16(const GemmProblem&) { return false; }
bool combineSupportedF16(const GemmProblem&) { return false; }
}  // namespace moe
using namespace moe;

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(2); } } while (0)

static int failures = 0;
static void fail(const std::string& what) {
  failures++;
  printf("FAIL %s\n", what.c_str());
}

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { CK(cudaMalloc(&p, std::max<size_t>(1, count) * sizeof(T))); }
  Dev(const std::vector<T>& v) : Dev(v.size()) { CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    CK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

static std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The split the layer picks for its router (moe_layer.cc gateSplit) on 132 SMs.
static int layerSplit(int T, int H, int cols) {
  if (T <= 32 || H % 4 != 0) return 1;
  const bool dense = T >= kDenseF32MinRows && !legacyPrefillKernels();
  const int tiles = ((T + (dense ? 127 : 63)) / (dense ? 128 : 64)) * ((cols + 127) / 128);
  const int want = (2 * 132 + tiles - 1) / tiles;
  const int split = std::max(1, std::min({want, H / 128, 16}));
  return dense ? (H + kSplitChunk(H, split) - 1) / kSplitChunk(H, split) : split;
}

// logits = x [M,K] @ B^T (B [N][K]) (+ bias), through the split-K slabs and their reduction as the layer runs it;
// aCopy (when copyElem is not float32) receives x converted.
static void denseGemm(const float* x, const float* B, const float* bias, int M, int N, int K, int split, float* partial,
                      float* logits, void* aCopy, DType copyElem, cudaStream_t s) {
  GemmProblem p;
  p.elem = DType::kFloat32;
  p.out = DType::kFloat32;
  p.A = x;
  p.lda = K;
  p.B = B;
  p.M = M;
  p.N = N;
  p.K = K;
  p.ldc = N;
  p.group = swigluGroup(DType::kFloat32);
  p.rowsPerSegmentHint = split > 1 ? 64 : M;
  if (aCopy) {
    p.aCopy = aCopy;
    p.aCopyElem = copyElem;
  }
  if (split > 1) {
    p.C = partial;
    p.kSplit = split;
    launchGroupedGemm(p, s);
    launchSplitKReduce(partial, split, M, N, bias, logits, s);
  } else {
    p.C = logits;
    p.bias = bias;
    launchGroupedGemm(p, s);
  }
}

static void checkDense(std::mt19937& rng, int M, int N, int K, int split, bool withBias, DType copyElem, int sampleRows,
                       bool infWeights = false) {
  const std::string name = std::string(infWeights ? "inf weights, " : "") +
                           (denseF32Core() == DenseF32Core::kFma && !infWeights ? "fma " : !infWeights ? "tf32x3 " : "") +
                           "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                           " split=" + std::to_string(split) + (withBias ? " bias" : "") +
                           (copyElem == DType::kBFloat16 ? " copy bf16" : copyElem == DType::kFloat16 ? " copy f16" : "");
  const auto x = randn(rng, static_cast<size_t>(M) * K);
  auto B = randn(rng, static_cast<size_t>(N) * K, 0.05f);
  // Non-finite weights (the layer then holds an ExactDenseF32Scope): +-inf in a few columns, one NaN; the outputs
  // must be IEEE float32's (+-inf, NaN where the float64 sum is), which the split TF32 products would not give.
  if (infWeights) {
    B[0] = INFINITY;
    B[static_cast<size_t>(1) * K + 3] = -INFINITY;
    B[static_cast<size_t>(N - 1) * K + K - 1] = NAN;
  }
  const ExactDenseF32Scope exact(infWeights);
  const auto bias = randn(rng, N);
  Dev<float> dx(x), dB(B), dbias(bias), partial(static_cast<size_t>(std::max(split, 1)) * M * N), logits(static_cast<size_t>(M) * N);
  const bool copy = copyElem != DType::kFloat32;
  Dev<uint16_t> dcopy(copy ? static_cast<size_t>(M) * K : 0), refCopy(copy ? static_cast<size_t>(M) * K : 0);
  CK(cudaMemset(logits.p, 0xff, logits.n * 4));  // NaN: a missed element shows
  denseGemm(dx.p, dB.p, withBias ? dbias.p : nullptr, M, N, K, split, partial.p, logits.p, copy ? dcopy.p : nullptr, copyElem, 0);
  CK(cudaDeviceSynchronize());
  const auto got = logits.get();
  // Deterministic: a second run gives the same bits.
  denseGemm(dx.p, dB.p, withBias ? dbias.p : nullptr, M, N, K, split, partial.p, logits.p, copy ? dcopy.p : nullptr, copyElem, 0);
  CK(cudaDeviceSynchronize());
  if (std::memcmp(got.data(), logits.get().data(), got.size() * 4) != 0) fail(name + ": two runs differ");
  double worst = 0;
  int bad = 0;
  std::vector<int> rows;
  for (int r = 0; r < M; r++) rows.push_back(r);
  if (sampleRows > 0 && sampleRows < M) {
    std::shuffle(rows.begin(), rows.end(), rng);
    rows.resize(sampleRows);
    rows.push_back(M - 1);
  }
  for (int r : rows) {
    for (int n = 0; n < N; n++) {
      double ref = withBias ? bias[n] : 0.0, mag = withBias ? std::fabs(bias[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        const double t = static_cast<double>(x[static_cast<size_t>(r) * K + k]) * B[static_cast<size_t>(n) * K + k];
        ref += t;
        mag += std::fabs(t);
      }
      const double g = got[static_cast<size_t>(r) * N + n];
      if (!std::isfinite(ref) || !std::isfinite(g)) {  // the same non-finite value (NaN, or inf of the same sign)
        if (!((std::isnan(ref) && std::isnan(g)) || (std::isinf(ref) && g == ref)) && bad++ < 3) {
          printf("  r=%d n=%d got %.9g ref %.9g\n", r, n, g, ref);
        }
        continue;
      }
      const double err = std::fabs(g - ref), bound = 1e-5 * mag + 1e-30;
      worst = std::max(worst, err / bound);
      if (!(err <= bound) && bad++ < 3) printf("  r=%d n=%d got %.9g ref %.9g\n", r, n, g, ref);
    }
  }
  if (bad) fail(name + ": " + std::to_string(bad) + " outputs out of bound");
  if (copy) {
    launchConvert(dx.p, refCopy.p, copyElem, static_cast<long long>(M) * K, 0);
    CK(cudaDeviceSynchronize());
    if (dcopy.get() != refCopy.get()) fail(name + ": the half copy of A differs from launchConvert's");
  }
  printf("dense %-48s worst err/bound %.3f%s\n", name.c_str(), worst, bad ? "  FAIL" : "");
}

// Host reference of launchPermute (stable counting sort, semantics section 3).
static void checkPermute(std::mt19937& rng, int T, int k, int E, int alignment, double invalidFraction) {
  const int n = T * k, R = n + E * (alignment - 1);
  std::vector<int> ids(n);
  std::uniform_int_distribution<int> pick(0, E - 1);
  std::uniform_real_distribution<double> u(0, 1);
  for (auto& id : ids) id = u(rng) < invalidFraction ? (u(rng) < 0.5 ? -1 : E + static_cast<int>(u(rng) * 3)) : pick(rng);
  if (E > 4) for (int i = 0; i < n; i++) if (ids[i] == 3) ids[i] = 2;  // an empty expert
  std::vector<int> count(E, 0), offsets(E + 1, 0), prefix(kTileClasses * (E + 1), 0), rowToPair(R, -1), rowMap(n, -1);
  for (int id : ids) if (id >= 0 && id < E) count[id]++;
  for (int e = 0; e < E; e++) {
    const int len = (count[e] + alignment - 1) / alignment * alignment;
    offsets[e + 1] = offsets[e] + len;
    for (int c = 0; c < kTileClasses; c++) prefix[c * (E + 1) + e + 1] = prefix[c * (E + 1) + e] + (len + (16 << c) - 1) / (16 << c);
  }
  std::vector<int> fill(offsets.begin(), offsets.end() - 1);
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= E) continue;
    rowToPair[fill[ids[i]]] = i;
    rowMap[i] = fill[ids[i]]++;
  }
  Dev<int> dids(ids), buf(E + (E + 1) + kTileClasses * (E + 1) + R + n + E);
  CK(cudaMemset(buf.p, 0x7f, buf.n * 4));  // garbage: every entry must be written
  PermuteBuffers pb{buf.p, buf.p + E, buf.p + E + (E + 1), nullptr, nullptr, nullptr};
  pb.rowToPair = pb.tilePrefix + kTileClasses * (E + 1);
  pb.rowMap = pb.rowToPair + R;
  pb.scratch = pb.rowMap + n;
  launchPermute(dids.p, T, k, E, alignment, R, pb, 0);
  CK(cudaDeviceSynchronize());
  const auto got = buf.get();
  auto same = [&](const std::vector<int>& want, size_t at, const char* what) {
    for (size_t i = 0; i < want.size(); i++) {
      if (got[at + i] != want[i]) {
        fail("permute T=" + std::to_string(T) + " k=" + std::to_string(k) + " E=" + std::to_string(E) + " alignment=" +
             std::to_string(alignment) + ": " + what + "[" + std::to_string(i) + "] = " + std::to_string(got[at + i]) +
             ", expected " + std::to_string(want[i]));
        return false;
      }
    }
    return true;
  };
  const bool ok = same(count, 0, "tokensPerExpert") & same(offsets, E, "offsets") & same(prefix, 2 * E + 1, "tilePrefix") &
                  same(rowToPair, 2 * E + 1 + kTileClasses * (E + 1), "rowToPair") &
                  same(rowMap, 2 * E + 1 + kTileClasses * (E + 1) + R, "rowMap");
  printf("permute T=%d k=%d E=%d alignment=%d: %s\n", T, k, E, alignment, ok ? "exact" : "FAIL");
}

static void checkCombine(std::mt19937& rng, int T, int k, int E, int D, bool withBias, bool weightsApplied, bool identity) {
  const int R = T * k + 5;
  std::vector<int> rows(R);
  for (int r = 0; r < R; r++) rows[r] = r;
  std::shuffle(rows.begin(), rows.end(), rng);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int> rowMap(T * k), ids(T * k);
  for (int i = 0; i < T * k; i++) {
    const double v = u(rng);
    rowMap[i] = v < 0.03 ? -1 : v < 0.04 ? R + 2 : rows[i];  // identity slots and an out-of-range row
    ids[i] = v < 0.05 ? E + 1 : static_cast<int>(u(rng) * E);  // some ids outside [0, E): no bias term
  }
  const auto y = randn(rng, static_cast<size_t>(R) * D), w = randn(rng, T * k), bias = randn(rng, static_cast<size_t>(E) * D),
             x = randn(rng, static_cast<size_t>(T) * D);
  Dev<float> dy(y), dw(w), dbias(bias), dx(x), out(static_cast<size_t>(T) * D);
  Dev<int> drow(rowMap), dids(ids);
  launchCombine(dy.p, R, D, drow.p, dw.p, dids.p, T, k, E, withBias ? dbias.p : nullptr, weightsApplied,
                identity ? dx.p : nullptr, out.p, 0);
  CK(cudaDeviceSynchronize());
  const auto got = out.get();
  int bad = 0;
  double worst = 0;
  for (int t = 0; t < T; t++) {
    for (int d = 0; d < D; d++) {
      double ref = 0, mag = 0;
      for (int j = 0; j < k; j++) {
        const int row = rowMap[t * k + j];
        const double wj = w[t * k + j];
        if (row >= 0 && row < R) {
          const double v = y[static_cast<size_t>(row) * D + d], term = weightsApplied ? v : wj * v;
          ref += term;
          mag += std::fabs(term);
          const int e = ids[t * k + j];
          if (withBias && e >= 0 && e < E) {
            ref += wj * bias[static_cast<size_t>(e) * D + d];
            mag += std::fabs(wj * bias[static_cast<size_t>(e) * D + d]);
          }
        } else if (identity && row == -1) {
          ref += wj * x[static_cast<size_t>(t) * D + d];
          mag += std::fabs(wj * x[static_cast<size_t>(t) * D + d]);
        }
      }
      const double err = std::fabs(got[static_cast<size_t>(t) * D + d] - ref), bound = 1e-5 * mag + 1e-30;
      worst = std::max(worst, err / bound);
      if (!(err <= bound)) bad++;
    }
  }
  const std::string name = "combine T=" + std::to_string(T) + " k=" + std::to_string(k) + " D=" + std::to_string(D) +
                           (withBias ? " bias" : "") + (weightsApplied ? " weightsApplied" : "") + (identity ? " identity" : "");
  if (bad) fail(name + ": " + std::to_string(bad) + " outputs out of bound");
  printf("%-56s worst err/bound %.3f%s\n", name.c_str(), worst, bad ? "  FAIL" : "");
}

template <typename F>
static float medianMs(F&& launch, int iters, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; i++) launch();
  std::vector<float> ms;
  for (int r = 0; r < reps; r++) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < iters; i++) launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t / iters);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The stages at the Qwen3-30B-A3B shapes (H 2048, E 128, k 8), eager launches back to back.
static void timeStages(std::mt19937& rng, int T) {
  const int H = 2048, E = 128, k = 8, n = T * k, R = n;
  const int split = layerSplit(T, H, E);
  const auto x = randn(rng, static_cast<size_t>(T) * H), B = randn(rng, static_cast<size_t>(E) * H, 0.05f);
  Dev<float> dx(x), dB(B), partial(static_cast<size_t>(split) * T * E), logits(static_cast<size_t>(T) * E);
  Dev<uint16_t> xh(static_cast<size_t>(T) * H);
  const bool legacy = legacyPrefillKernels();
  // The layer's aCopy: legacy runs it as a separate convert after the GEMM (gemm_f32.cu), new fuses it.
  const float router = medianMs([&] { denseGemm(dx.p, dB.p, nullptr, T, E, H, split, partial.p, logits.p, xh.p, DType::kBFloat16, 0); }, 20, 9);
  std::vector<int> ids(n);
  std::uniform_int_distribution<int> pick(0, E - 1);
  for (int t = 0; t < T; t++) {  // k distinct experts per token, as top-k gives
    std::vector<int> chosen;
    while (static_cast<int>(chosen.size()) < k) {
      const int e = pick(rng);
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    for (int j = 0; j < k; j++) ids[t * k + j] = chosen[j];
  }
  Dev<int> dids(ids), buf(E + (E + 1) + kTileClasses * (E + 1) + R + n + E);
  PermuteBuffers pb{buf.p, buf.p + E, buf.p + E + (E + 1), nullptr, nullptr, nullptr};
  pb.rowToPair = pb.tilePrefix + kTileClasses * (E + 1);
  pb.rowMap = pb.rowToPair + R;
  pb.scratch = pb.rowMap + n;
  const float permute = medianMs([&] { launchPermute(dids.p, T, k, E, 1, R, pb, 0); }, 20, 9);
  const auto w = randn(rng, n);
  Dev<float> y(static_cast<size_t>(R) * H), dw(w), out(static_cast<size_t>(T) * H);
  CK(cudaMemset(y.p, 0, y.n * 4));
  const float combine = medianMs([&] {
    launchCombine(y.p, R, H, pb.rowMap, dw.p, dids.p, T, k, E, nullptr, false, nullptr, out.p, 0);
  }, 20, 9);
  CK(cudaDeviceSynchronize());
  printf("time T=%d (%s kernels): router GEMM (split %d, + reduce + bf16 copy of x) %.4f ms, permute %.4f ms, "
         "combine %.4f ms, sum %.4f ms\n", T, legacy ? "legacy" : denseF32Core() == DenseF32Core::kFma ? "new, fma" : "new, tf32x3",
         split, router, permute, combine, router + permute + combine);
}

int main(int argc, char** argv) {
  bool check = true, timing = true, small = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--check-only") timing = false;
    if (a == "--time-only") check = false;
    if (a == "--small") small = true;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device %s sm_%d%d, %d SMs; kernels %s\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
         legacyPrefillKernels() ? "legacy (TFJS_MOE_CUDA_PREFILL_LEGACY=1)" : "new");
  std::mt19937 rng(4242);
  if (check) {
    // M >= kDenseF32MinRows: the 128x128 tiles; partial row / column tiles, K slices of kSplitChunk with an empty
    // tail slice, the copy with several column tiles, f16 copy, bias without split.
    for (const char* core : {"tf32x3", "fma"}) {  // both math cores (TFJS_MOE_CUDA_DENSE_F32)
      setenv("TFJS_MOE_CUDA_DENSE_F32", core, 1);
      if (!small) checkDense(rng, 4096, 128, 2048, layerSplit(4096, 2048, 128), false, DType::kBFloat16, 200);
      checkDense(rng, 1100, 129, 132, 3, false, DType::kBFloat16, small ? 64 : 0);
      checkDense(rng, 300, 128, 2048, layerSplit(300, 2048, 128), false, DType::kBFloat16, small ? 32 : 0);
      checkDense(rng, 1024, 200, 100, 1, true, DType::kFloat16, small ? 64 : 0);
      checkDense(rng, 1030, 300, 68, 1, true, DType::kBFloat16, small ? 64 : 0);
      checkDense(rng, 1500, 64, 1024, 16, false, DType::kFloat32, small ? 64 : 300);
      checkDense(rng, 1025, 7, 4, 2, false, DType::kBFloat16, 0);  // more slices than K needs: empty slices write zeros
    }
    checkDense(rng, 1024, 130, 256, 4, true, DType::kBFloat16, small ? 32 : 128, true);  // non-finite weights: FMA
    unsetenv("TFJS_MOE_CUDA_DENSE_F32");
    // The one-pass permute: several chunks (> 16384 pairs), invalid ids, alignment, many experts, the old path
    // above 1024 experts, the one-block path at <= 256 pairs.
    if (!small) checkPermute(rng, 4096, 8, 128, 1, 0.0);
    checkPermute(rng, small ? 700 : 5000, 7, 128, 1, 0.02);
    checkPermute(rng, 300, 3, 1000, 4, 0.05);
    checkPermute(rng, 200, 8, 1100, 1, 0.01);
    checkPermute(rng, 33, 8, 1, 2, 0.1);
    checkPermute(rng, 20, 4, 16, 1, 0.1);
    checkPermute(rng, 1, 4, 1024, 1, 0.0);
    // The vectorized combine (D % 4 == 0, k <= 8) and the scalar one.
    checkCombine(rng, small ? 64 : 1024, 8, 128, small ? 256 : 2048, false, false, false);
    checkCombine(rng, 100, 3, 5, 64, true, false, true);
    checkCombine(rng, 100, 8, 9, 36, true, true, true);
    checkCombine(rng, 50, 10, 12, 64, true, false, false);
    checkCombine(rng, 70, 2, 4, 30, true, false, true);
    checkCombine(rng, 1, 1, 1, 4, false, false, false);
    printf("correctness: %d failing\n", failures);
  }
  if (timing) {
    timeStages(rng, 4096);
    timeStages(rng, 256);
    if (!legacyPrefillKernels()) {
      setenv("TFJS_MOE_CUDA_DENSE_F32", "fma", 1);
      timeStages(rng, 4096);
      unsetenv("TFJS_MOE_CUDA_DENSE_F32");
    }
  }
  return failures ? 1 : 0;
}
