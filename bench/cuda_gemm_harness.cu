// Standalone check + timing of the sm_90a wgmma grouped GEMM (src/kernels/cuda/gemm_sm90.cuh) against a float64
// reference and the mma.sync GEMM, on random data: the Qwen3-30B-A3B expert GEMMs (T = 4096 / 256, sampled rows),
// odd shapes (partial tiles, K % 64 != 0, empty experts, dense, every epilogue, bf16 and f16), then CUDA-graph timing
// of both GEMMs per tile configuration. The float64 reference runs on the GPU; the bound per output is the float32
// accumulation bound (1e-5 x sum |a_k b_k|) plus the output type's rounding. Build (no GPU needed), S=src/kernels/cuda:
//   nvcc -std=c++17 -O3 -I$S -gencode arch=compute_90a,code=sm_90a -c $S/gemm_sm90.cu -o sm90.o
//   for f in gemm_bf16 gemm_f16; do nvcc -std=c++17 -O3 -I$S -gencode arch=compute_90,code=sm_90 -c $S/$f.cu; done
//   nvcc -std=c++17 -O3 -I$S -gencode arch=compute_90,code=sm_90 bench/cuda_gemm_harness.cu sm90.o gemm_bf16.o \
//     gemm_f16.o -o harness
// Run: ./harness [--check-only] [--small] (compute-sanitizer: the small cases) [--profile] (ncu: one launch each).
// Exit status 1 when a check fails.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <cstdio>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "gemm_sm90.h"
#include "grouped_gemm.h"

namespace moe {
#ifdef HARNESS_SM90_ONLY
// -DHARNESS_SM90_ONLY: links gemm_sm90.o alone (a smaller binary for the GPU batch): no mma.sync comparisons.
void launchGroupedGemmBf16(const GemmProblem&, cudaStream_t) {}
void launchGroupedGemmF16(const GemmProblem&, cudaStream_t) {}
constexpr bool kWithMma = false;
#else
void launchGroupedGemmBf16(const GemmProblem& p, cudaStream_t stream);
void launchGroupedGemmF16(const GemmProblem& p, cudaStream_t stream);
constexpr bool kWithMma = true;
#endif
}  // namespace moe
using namespace moe;

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(2); } } while (0)

__device__ unsigned hashU(unsigned x) { x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16; return x; }
template <typename T>
__global__ void fillKernel(T* p, long long n, unsigned seed, float scale) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float u = (hashU((unsigned)i * 2654435761u + seed) & 0xFFFFFF) / float(0x1000000) * 2.f - 1.f;
    p[i] = ElemTraits<T>::fromFloat(u * scale);
  }
}
template <typename T> void fill(T* p, long long n, unsigned seed, float scale) {
  fillKernel<<<1024, 256>>>(p, n, seed, scale);
  CK(cudaGetLastError());
}

// ref[i][n] (double) and absdot for sampled problem rows: row r reads A row src(r), expert e(r).
template <typename T>
__global__ void refKernel(const T* A, int lda, const int* rowIndex, int rowDiv, const T* B, int N, int K, const int* rows,
                          const int* experts, int nRows, double* ref, double* absdot) {
  const int i = blockIdx.y;
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= nRows || n >= N) return;
  const int r = rows[i];
  const int src = rowIndex ? (rowIndex[r] < 0 ? -1 : rowIndex[r] / rowDiv) : r;
  double s = 0, a = 0;
  if (src >= 0) {
    const T* ar = A + (long long)src * lda;
    const T* br = B + ((long long)experts[i] * N + n) * K;
    for (int k = 0; k < K; k++) {
      const double v = (double)ElemTraits<T>::toFloat(ar[k]) * (double)ElemTraits<T>::toFloat(br[k]);
      s += v;
      a += fabs(v);
    }
  }
  ref[(long long)i * N + n] = s;
  absdot[(long long)i * N + n] = a;
}

// The W4A16 mode of checkCase (gInt4Config >= 0): B is replaced by the dequantized values of random int4 codes
// (group scales, optional non-integer zero points), computed as the kernel's packed half arithmetic does, and the
// int4 kernel (launchGroupedGemmSm90Int4, that configuration forced) reads the codes.
int gInt4Config = -1;
bool gInt4Zeros = false;
constexpr int kInt4Group = 32;
__global__ void codesKernel(uint32_t* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    p[i] = hashU((unsigned)i * 2654435761u + seed) ^ hashU((unsigned)i + seed * 7u);
}
template <typename T>
__global__ void dequantKernel(const uint32_t* codes, const float* scales, const float* zeros, long long rows, int K,
                              T* B) {
  const int G = K / kInt4Group;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < rows * K; i += (long long)gridDim.x * blockDim.x) {
    const long long row = i / K;
    const int k = (int)(i % K);
    const unsigned c = (codes[row * (K / 8) + k / 8] >> (4 * (k % 8))) & 15u;
    // As the kernel's packed half arithmetic: (base + c) - half(base + z) exactly, times half(s), one rounding.
    const float base = std::is_same<T, __nv_bfloat16>::value ? 128.f : 1024.f;
    const float z = zeros ? zeros[row * G + k / kInt4Group] : 8.f;
    const float d = (base + (float)c) - ElemTraits<T>::toFloat(ElemTraits<T>::fromFloat(base + z));
    const float s = ElemTraits<T>::toFloat(ElemTraits<T>::fromFloat(scales[row * G + k / kInt4Group]));
    B[i] = ElemTraits<T>::fromFloat(__fmul_rn(d, s));
  }
}

struct Routing {
  int R = 0;
  std::vector<int> offsets, prefix, rowToPair, rowExpert;
};
// T tokens, k distinct experts each (skew: expert weights ~ 1/(1+e)^skew), rows sorted by expert.
Routing route(int T, int k, int E, double skew, std::mt19937& rng, int emptyEvery = 0) {
  std::vector<double> w(E);
  for (int e = 0; e < E; e++) w[e] = (emptyEvery && e % emptyEvery == 1) ? 0 : 1.0 / std::pow(1.0 + e, skew);
  std::vector<std::vector<int>> byExpert(E);
  for (int t = 0; t < T; t++) {
    std::vector<double> ww = w;
    for (int j = 0; j < k; j++) {
      std::discrete_distribution<int> d(ww.begin(), ww.end());
      const int e = d(rng);
      ww[e] = 0;
      byExpert[e].push_back(t * k + j);
    }
  }
  Routing r;
  r.offsets.assign(E + 1, 0);
  for (int e = 0; e < E; e++) {
    r.offsets[e + 1] = r.offsets[e] + (int)byExpert[e].size();
    for (int p : byExpert[e]) { r.rowToPair.push_back(p); r.rowExpert.push_back(e); }
  }
  r.R = r.offsets[E];
  r.prefix.assign(kTileClasses * (E + 1), 0);
  for (int b = 0; b < kTileClasses; b++) {
    const int bm = 16 << b;
    for (int e = 0; e < E; e++) {
      const int c = r.offsets[e + 1] - r.offsets[e];
      r.prefix[b * (E + 1) + e + 1] = r.prefix[b * (E + 1) + e] + (c + bm - 1) / bm;
    }
  }
  return r;
}

template <typename T> T* dalloc(size_t n) { T* p; CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); return p; }
template <typename T> T* upload(const std::vector<T>& v) { T* p = dalloc<T>(v.size()); CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); return p; }

float bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
float h2f(uint16_t h) { return __half2float(*reinterpret_cast<__half*>(&h)); }

struct Case {
  const char* name;
  DType elem;
  Epilogue epi;
  DType out;
  int T, k, E, N, K;
  bool gather, dense, bias, scale;
  double skew;
  int emptyEvery;
  int sampleRows;  // 0: all
};

double silu(double z) { return z / (1 + std::exp(-z)); }

int failures = 0;

// Runs one case through launcher (config >= 0: sm90 with that config; -1: mma.sync) and checks against float64.
template <typename T>
void checkCase(const Case& c, int config, std::mt19937& rng) {
  Routing rt = c.dense ? Routing{} : route(c.T, c.k, c.E, c.skew, rng, c.emptyEvery);
  const int R = c.dense ? c.T : rt.R;
  const int lda = c.K + (c.K % 16 == 0 ? 8 : 0);  // a padded stride also
  const long long aRowsCount = c.gather ? c.T : R;
  T* A = dalloc<T>((size_t)aRowsCount * lda);
  fill(A, aRowsCount * lda, 11, 1.f);
  const int E = c.dense ? 1 : c.E;
  T* B = dalloc<T>((size_t)E * c.N * c.K);
  fill(B, (long long)E * c.N * c.K, 23, 1.f / std::sqrt((float)c.K));
  uint32_t* codes = nullptr;
  float *qScales = nullptr, *qZeros = nullptr;
  if (gInt4Config >= 0) {
    const long long rowsEN = (long long)E * c.N, G = c.K / kInt4Group;
    codes = dalloc<uint32_t>(rowsEN * c.K / 8);
    codesKernel<<<1024, 256>>>(codes, rowsEN * c.K / 8, 31);
    std::vector<float> sc(rowsEN * G), zp(gInt4Zeros ? rowsEN * G : 0);
    for (auto& v : sc) v = std::uniform_real_distribution<float>(0.5f, 1.5f)(rng) / (4.f * std::sqrt((float)c.K));
    for (auto& v : zp) v = std::uniform_real_distribution<float>(6.f, 9.f)(rng);
    qScales = upload(sc);
    if (gInt4Zeros) qZeros = upload(zp);
    dequantKernel<T><<<1024, 256>>>(codes, qScales, qZeros, rowsEN, c.K, B);
    CK(cudaGetLastError());
  }
  std::vector<float> biasH(c.bias ? (size_t)E * c.N : 0);
  for (auto& b : biasH) b = std::uniform_real_distribution<float>(-0.5f, 0.5f)(rng);
  float* bias = c.bias ? upload(biasH) : nullptr;
  std::vector<float> scaleH(c.scale ? (size_t)c.T * c.k : 0);
  for (auto& s : scaleH) s = std::uniform_real_distribution<float>(0.f, 1.f)(rng);
  float* scale = c.scale ? upload(scaleH) : nullptr;
  int* offsets = c.dense ? nullptr : upload(rt.offsets);
  int* prefix = c.dense ? nullptr : upload(rt.prefix);
  int* rowToPair = c.dense ? nullptr : upload(rt.rowToPair);
  const int outCols = c.epi == Epilogue::kSwiglu ? c.N / 2 : c.N;
  const int ldc = outCols + 4;
  const int ob = c.out == DType::kFloat32 ? 4 : 2;
  void* C = dalloc<char>((size_t)R * ldc * ob);
  CK(cudaMemset(C, 0, (size_t)R * ldc * ob));
  std::vector<float> init;
  if (c.epi == Epilogue::kAccumulate) {
    init.resize((size_t)R * ldc);
    for (auto& v : init) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    CK(cudaMemcpy(C, init.data(), init.size() * 4, cudaMemcpyHostToDevice));
  }
  GemmProblem p;
  p.elem = c.elem; p.out = c.out; p.A = A; p.lda = lda;
  p.aRowIndex = c.gather ? rowToPair : nullptr; p.aRowDiv = c.k;
  p.B = B; p.bias = bias; p.C = C; p.ldc = ldc;
  p.scale = scale; p.scaleIndex = c.scale && !c.dense ? rowToPair : nullptr;
  p.M = R; p.N = c.N; p.K = c.K;
  p.seg = c.dense ? SegmentView{nullptr, nullptr, 1} : SegmentView{offsets, prefix, c.E};
  p.group = swigluGroup(c.elem); p.epilogue = c.epi;
  p.rowsPerSegmentHint = c.dense ? R : std::max(1, 2 * R / std::max(1, std::min(c.E, R)));
  bool ran = true;
  if (gInt4Config >= 0) {
    p.bInt4 = reinterpret_cast<const int32_t*>(codes);
    p.bScales = qScales;
    p.bZeros = qZeros;
    p.groupSize = kInt4Group;
    sm90Tuning().mode = Sm90Gemm::kOn;
    sm90Tuning().int4Config = kSm90Int4Forced + gInt4Config;
    ran = launchGroupedGemmSm90Int4(p, 0);
    sm90Tuning().int4Config = -1;
  } else if (config >= 0) {
    sm90Tuning().mode = Sm90Gemm::kOn;
    sm90Tuning().forceConfig = config;
    ran = launchGroupedGemmSm90(p, 0);
  } else {
    sm90Tuning().mode = Sm90Gemm::kOff;
    if (c.elem == DType::kBFloat16) launchGroupedGemmBf16(p, 0); else launchGroupedGemmF16(p, 0);
  }
  cudaError_t st = cudaDeviceSynchronize();
  if (!ran || st != cudaSuccess) {
    printf("FAIL %-28s %-10s %s\n", c.name, gInt4Config >= 0 ? (gInt4Config ? "int4 64x256x4" : "int4 64x128x6") :
           config >= 0 ? sm90ConfigName(config) : "mma.sync", ran ? cudaGetErrorString(st) : "not run");
    failures++;
    if (st != cudaSuccess) exit(3);
    return;
  }
  // sampled rows
  std::vector<int> rows(R);
  std::iota(rows.begin(), rows.end(), 0);
  if (c.sampleRows > 0 && c.sampleRows < R) { std::shuffle(rows.begin(), rows.end(), rng); rows.resize(c.sampleRows); std::sort(rows.begin(), rows.end()); }
  std::vector<int> exps(rows.size());
  for (size_t i = 0; i < rows.size(); i++) exps[i] = c.dense ? 0 : rt.rowExpert[rows[i]];
  int* dRows = upload(rows);
  int* dExps = upload(exps);
  double* ref = dalloc<double>(rows.size() * c.N);
  double* absd = dalloc<double>(rows.size() * c.N);
  refKernel<<<dim3((c.N + 127) / 128, rows.size()), 128>>>(A, lda, p.aRowIndex, c.k, B, c.N, c.K, dRows, dExps, (int)rows.size(), ref, absd);
  CK(cudaDeviceSynchronize());
  std::vector<double> refH(rows.size() * c.N), absH(rows.size() * c.N);
  CK(cudaMemcpy(refH.data(), ref, refH.size() * 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(absH.data(), absd, absH.size() * 8, cudaMemcpyDeviceToHost));
  std::vector<unsigned char> outH((size_t)R * ldc * ob);
  CK(cudaMemcpy(outH.data(), C, outH.size(), cudaMemcpyDeviceToHost));
  double worst = 0;
  long long bad = 0, checked = 0;
  for (size_t i = 0; i < rows.size(); i++) {
    const int r = rows[i];
    const int e = exps[i];
    const double sc = c.scale ? scaleH[c.dense ? r : rt.rowToPair[r]] : 1.0;
    auto got = [&](int col) -> double {
      const size_t idx = (size_t)r * ldc + col;
      if (c.out == DType::kFloat32) return reinterpret_cast<float*>(outH.data())[idx];
      const uint16_t h = reinterpret_cast<uint16_t*>(outH.data())[idx];
      return c.out == DType::kBFloat16 ? bf2f(h) : h2f(h);
    };
    const double outTol = c.out == DType::kFloat32 ? 1e-6 : (c.out == DType::kBFloat16 ? 1.0 / 128 : 1.0 / 1024);
    for (int col = 0; col < outCols; col++) {
      double want, bound;
      if (c.epi == Epilogue::kSwiglu) {
        const int gcol = (col / 8) * 16 + col % 8, ucol = gcol + 8;
        if (ucol >= c.N) continue;
        const double g = refH[i * c.N + gcol] + (c.bias ? biasH[(size_t)e * c.N + gcol] : 0);
        const double u = refH[i * c.N + ucol] + (c.bias ? biasH[(size_t)e * c.N + ucol] : 0);
        want = silu(g) * u * sc;
        // f32 accumulation error of g and u propagated (|d silu| <= 1.1), plus the output rounding.
        const double eg = 1e-5 * absH[i * c.N + gcol] + 1e-6, eu = 1e-5 * absH[i * c.N + ucol] + 1e-6;
        bound = (1.1 * eg * std::fabs(u) + std::fabs(silu(g)) * eu + eg * eu) * sc + outTol * std::fabs(want) + 1e-6;
      } else {
        want = refH[i * c.N + col] + (c.bias ? biasH[(size_t)e * c.N + col] : 0);
        if (c.epi == Epilogue::kAccumulate) want += init[(size_t)r * ldc + col];
        bound = 1e-5 * absH[i * c.N + col] + outTol * std::fabs(want) + 1e-6;
      }
      const double err = std::fabs(got(col) - want);
      if (!(err <= bound)) {
        if (bad < 3) printf("    mismatch %s row %d col %d got %.7g want %.7g bound %.3g\n", c.name, r, col, got(col), want, bound);
        bad++;
      }
      worst = std::max(worst, err / bound);
      checked++;
    }
  }
  printf("%s %-28s %-10s R=%d N=%d K=%d checked %lld worst err/bound %.3f%s\n", bad ? "FAIL" : "ok  ", c.name,
         gInt4Config >= 0 ? (gInt4Config ? (gInt4Zeros ? "int4z 64x256" : "int4 64x256") : (gInt4Zeros ? "int4z 64x128" : "int4 64x128")) :
         config >= 0 ? sm90ConfigName(config) : "mma.sync", R, c.N, c.K, checked, worst, bad ? " <-- MISMATCH" : "");
  if (bad) failures++;
  cudaFree(A); cudaFree(B); cudaFree(C); cudaFree(ref); cudaFree(absd); cudaFree(dRows); cudaFree(dExps);
  if (bias) cudaFree(bias);
  if (scale) cudaFree(scale);
  if (offsets) { cudaFree(offsets); cudaFree(prefix); cudaFree(rowToPair); }
  if (codes) { cudaFree(codes); cudaFree(qScales); if (qZeros) cudaFree(qZeros); }
}

// Timing of the Qwen3-30B-A3B layer's two expert GEMMs at T tokens: mma.sync vs each wgmma config.
void timeShapes(int T, std::mt19937& rng, int reps) {
  const int E = 128, k = 8, H = 2048, I = 768;
  Routing rt = route(T, k, E, 0.0, rng);
  const int R = rt.R;
  using bf = __nv_bfloat16;
  bf* x = dalloc<bf>((size_t)T * H); fill(x, (long long)T * H, 1, 1.f);
  bf* wUp = dalloc<bf>((size_t)E * 2 * I * H); fill(wUp, (long long)E * 2 * I * H, 2, 0.02f);
  bf* wDn = dalloc<bf>((size_t)E * H * I); fill(wDn, (long long)E * H * I, 3, 0.02f);
  bf* h = dalloc<bf>((size_t)R * I);
  float* y = dalloc<float>((size_t)R * H);
  std::vector<float> wts(T * k, 0.125f);
  float* w = upload(wts);
  int* offsets = upload(rt.offsets); int* prefix = upload(rt.prefix); int* r2p = upload(rt.rowToPair);
  const int hint = std::max(1, 2 * R / std::min(E, R));
  GemmProblem up;
  up.elem = DType::kBFloat16; up.out = DType::kBFloat16; up.A = x; up.lda = H; up.aRowIndex = r2p; up.aRowDiv = k;
  up.B = wUp; up.C = h; up.ldc = I; up.scale = w; up.scaleIndex = r2p; up.M = R; up.N = 2 * I; up.K = H;
  up.seg = SegmentView{offsets, prefix, E}; up.group = 8; up.epilogue = Epilogue::kSwiglu; up.rowsPerSegmentHint = hint;
  GemmProblem dn = up;
  dn.out = DType::kFloat32; dn.A = h; dn.lda = I; dn.aRowIndex = nullptr; dn.B = wDn; dn.C = y; dn.ldc = H;
  dn.scale = nullptr; dn.scaleIndex = nullptr; dn.N = H; dn.K = I; dn.epilogue = Epilogue::kStore;
  cudaStream_t s; CK(cudaStreamCreate(&s));
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  const double upFlops = 2.0 * R * 2 * I * H, dnFlops = 2.0 * R * H * I;
  // Diagnostics at the up_gate shape without the row gather (A = R distinct rows): kStore f32 with the rows by TMA
  // (3) and by cp.async (4), to separate the gather + proxy fence and the SwiGLU epilogue from the mainloop.
  bf* aFlat = nullptr;
  float* cFlat = nullptr;
  GemmProblem flat = up;
  if (T >= 4096) {
    aFlat = dalloc<bf>((size_t)R * H); fill(aFlat, (long long)R * H, 5, 1.f);
    cFlat = dalloc<float>((size_t)R * 2 * I);
    flat.A = aFlat; flat.aRowIndex = nullptr; flat.out = DType::kFloat32; flat.C = cFlat; flat.ldc = 2 * I;
    flat.scale = nullptr; flat.scaleIndex = nullptr; flat.epilogue = Epilogue::kStore;
  }
  // int4 g32 codes of both weights (random; the timing does not depend on the values): the W4A16 kernels at mid
  // sizes, configs sm90ConfigCount() + 0 / 1 = the wgmma int4 kernel, -2 = the mma.sync W4A16 tiles.
  const bool int4 = T <= 1024;
  uint32_t *qUp = nullptr, *qDn = nullptr;
  float *sUp = nullptr, *sDn = nullptr;
  GemmProblem upQ = up, dnQ = dn;
  if (int4) {
    qUp = dalloc<uint32_t>((size_t)E * 2 * I * H / 8); codesKernel<<<1024, 256>>>(qUp, (long long)E * 2 * I * H / 8, 7);
    qDn = dalloc<uint32_t>((size_t)E * H * I / 8); codesKernel<<<1024, 256>>>(qDn, (long long)E * H * I / 8, 8);
    sUp = dalloc<float>((size_t)E * 2 * I * H / kInt4Group); fill(sUp, (long long)E * 2 * I * H / kInt4Group, 9, 0.01f);
    sDn = dalloc<float>((size_t)E * H * I / kInt4Group); fill(sDn, (long long)E * H * I / kInt4Group, 10, 0.01f);
    upQ.bInt4 = reinterpret_cast<const int32_t*>(qUp); upQ.bScales = sUp; upQ.groupSize = kInt4Group;
    dnQ.bInt4 = reinterpret_cast<const int32_t*>(qDn); dnQ.bScales = sDn; dnQ.groupSize = kInt4Group;
  }
  const char* names[] = {"up_gate", "down", "down-cpA", "upflat-tma", "upflat-cpA"};
  for (int which = 0; which < (T >= 4096 ? 5 : 3); which++) {
    const GemmProblem& p = which == 0 ? up : which <= 2 ? dn : flat;
    const double flops = which == 0 || which >= 3 ? upFlops : dnFlops;
    sm90Tuning().activationTma = which != 2 && which != 4;  // 2, 4: rows by cp.async
    const int lastConfig = sm90ConfigCount() + (int4 && which <= 1 ? 2 : 0);
    for (int config = which >= 2 || !kWithMma ? 0 : int4 ? -2 : -1; config < lastConfig; config++) {
      const GemmProblem& pq = which == 0 ? upQ : dnQ;
      auto launch = [&] {
        if (config == -2) { sm90Tuning().mode = Sm90Gemm::kOff; launchGroupedGemmBf16(pq, s); }
        else if (config < 0) { sm90Tuning().mode = Sm90Gemm::kOff; launchGroupedGemmBf16(p, s); }
        else if (config >= sm90ConfigCount()) {
          sm90Tuning().mode = Sm90Gemm::kOn;
          sm90Tuning().int4Config = kSm90Int4Forced + config - sm90ConfigCount();
          launchGroupedGemmSm90Int4(pq, s);
          sm90Tuning().int4Config = -1;
        }
        else { sm90Tuning().mode = Sm90Gemm::kOn; sm90Tuning().forceConfig = config; launchGroupedGemmSm90(p, s); }
      };
      // CUDA graph of `iters` launches, replayed
      const int iters = 20;
      cudaGraph_t g; cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int i = 0; i < iters; i++) launch();
      CK(cudaStreamEndCapture(s, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      CK(cudaGraphLaunch(ge, s));
      CK(cudaStreamSynchronize(s));
      std::vector<float> ms;
      for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(e0, s)); CK(cudaGraphLaunch(ge, s)); CK(cudaEventRecord(e1, s)); CK(cudaEventSynchronize(e1));
        float t; CK(cudaEventElapsedTime(&t, e0, e1)); ms.push_back(t / iters);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const char* cname = config == -2 ? "int4 mma.sync" : config < 0 ? "mma.sync" :
                          config == sm90ConfigCount() ? "int4 wgmma 64x128x6" : config > sm90ConfigCount() ? "int4 wgmma 64x256x4" :
                          sm90ConfigName(config);
      printf("time T=%d %-10s %-10s %.4f ms  %.0f TFLOP/s (min %.4f)\n", T, names[which], cname, med, flops / med / 1e9, ms[0]);
      CK(cudaGraphExecDestroy(ge)); CK(cudaGraphDestroy(g));
    }
  }
  sm90Tuning().forceConfig = -1;
  sm90Tuning().activationTma = true;
  if (aFlat) { cudaFree(aFlat); cudaFree(cFlat); }
  if (int4) { cudaFree(qUp); cudaFree(qDn); cudaFree(sUp); cudaFree(sDn); }
  cudaFree(x); cudaFree(wUp); cudaFree(wDn); cudaFree(h); cudaFree(y); cudaFree(w); cudaFree(offsets); cudaFree(prefix); cudaFree(r2p);
}

// One eager launch per (problem, config) at T tokens, for ncu: mma.sync then every wgmma config.
void profileShapes(int T, std::mt19937& rng) {
  const int E = 128, k = 8, H = 2048, I = 768;
  Routing rt = route(T, k, E, 0.0, rng);
  const int R = rt.R;
  using bf = __nv_bfloat16;
  bf* x = dalloc<bf>((size_t)T * H); fill(x, (long long)T * H, 1, 1.f);
  bf* wUp = dalloc<bf>((size_t)E * 2 * I * H); fill(wUp, (long long)E * 2 * I * H, 2, 0.02f);
  bf* wDn = dalloc<bf>((size_t)E * H * I); fill(wDn, (long long)E * H * I, 3, 0.02f);
  bf* h = dalloc<bf>((size_t)R * I); fill(h, (long long)R * I, 4, 1.f);
  float* y = dalloc<float>((size_t)R * H);
  std::vector<float> wts(T * k, 0.125f);
  float* w = upload(wts);
  int* offsets = upload(rt.offsets); int* prefix = upload(rt.prefix); int* r2p = upload(rt.rowToPair);
  GemmProblem up;
  up.elem = DType::kBFloat16; up.out = DType::kBFloat16; up.A = x; up.lda = H; up.aRowIndex = r2p; up.aRowDiv = k;
  up.B = wUp; up.C = h; up.ldc = I; up.scale = w; up.scaleIndex = r2p; up.M = R; up.N = 2 * I; up.K = H;
  up.seg = SegmentView{offsets, prefix, E}; up.group = 8; up.epilogue = Epilogue::kSwiglu;
  up.rowsPerSegmentHint = std::max(1, 2 * R / std::min(E, R));
  GemmProblem dn = up;
  dn.out = DType::kFloat32; dn.A = h; dn.lda = I; dn.aRowIndex = nullptr; dn.B = wDn; dn.C = y; dn.ldc = H;
  dn.scale = nullptr; dn.scaleIndex = nullptr; dn.N = H; dn.K = I; dn.epilogue = Epilogue::kStore;
  for (const GemmProblem* p : {&up, &dn}) {
    sm90Tuning().mode = Sm90Gemm::kOff;
    launchGroupedGemmBf16(*p, 0);
    for (int config = 0; config < sm90ConfigCount(); config++) {
      sm90Tuning().mode = Sm90Gemm::kOn;
      sm90Tuning().forceConfig = config;
      launchGroupedGemmSm90(*p, 0);
    }
  }
  CK(cudaDeviceSynchronize());
  printf("profiled T=%d: up_gate and down, mma.sync then configs", T);
  for (int c = 0; c < sm90ConfigCount(); c++) printf(" %s", sm90ConfigName(c));
  printf("\n");
}

int main(int argc, char** argv) {
  bool timing = true, small = false, profile = false;
  for (int i = 1; i < argc; i++) {
    if (std::string(argv[i]) == "--check-only") timing = false;
    if (std::string(argv[i]) == "--small") small = true;
    if (std::string(argv[i]) == "--profile") profile = true;  // ncu: T = 4096 up_gate and down once per config
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);  // a timeout kill keeps what was printed
  cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, 0));
  printf("device %s sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::mt19937 rng(1234);
  if (profile) {
    profileShapes(4096, rng);
    return 0;
  }
  const Case cases[] = {
      // name, elem, epi, out, T, k, E, N, K, gather, dense, bias, scale, skew, emptyEvery, sampleRows
      {"qwen-up f32 store", DType::kBFloat16, Epilogue::kStore, DType::kFloat32, 4096, 8, 128, 1536, 2048, true, false, false, false, 0.0, 0, 384},
      {"qwen-up swiglu bf16", DType::kBFloat16, Epilogue::kSwiglu, DType::kBFloat16, 4096, 8, 128, 1536, 2048, true, false, false, true, 0.0, 0, 384},
      {"qwen-down store", DType::kBFloat16, Epilogue::kStore, DType::kFloat32, 4096, 8, 128, 2048, 768, false, false, false, false, 0.0, 0, 384},
      {"t256-up swiglu skew", DType::kBFloat16, Epilogue::kSwiglu, DType::kBFloat16, 256, 8, 128, 1536, 2048, true, false, false, true, 1.0, 0, 256},
      {"odd N K bias empty", DType::kBFloat16, Epilogue::kStore, DType::kFloat32, 300, 3, 9, 200, 72, true, false, true, false, 0.5, 4, 0},
      {"odd swiglu f32 bias", DType::kBFloat16, Epilogue::kSwiglu, DType::kFloat32, 200, 2, 7, 336, 136, true, false, true, true, 0.0, 3, 0},
      {"f16 swiglu", DType::kFloat16, Epilogue::kSwiglu, DType::kFloat16, 500, 4, 16, 512, 256, true, false, true, true, 0.3, 0, 0},
      {"f16 store nogather", DType::kFloat16, Epilogue::kStore, DType::kFloat32, 700, 2, 5, 384, 200, false, false, false, false, 0.0, 0, 0},
      {"dense accumulate", DType::kBFloat16, Epilogue::kAccumulate, DType::kFloat32, 333, 1, 1, 264, 520, false, true, false, false, 0.0, 0, 0},
      {"dense swiglu", DType::kBFloat16, Epilogue::kSwiglu, DType::kBFloat16, 77, 1, 1, 144, 64, false, true, true, true, 0.0, 0, 0},
      {"tiny", DType::kBFloat16, Epilogue::kStore, DType::kFloat32, 3, 2, 4, 8, 8, true, false, false, false, 0.0, 0, 0},
  };
  for (const Case& c : cases) {
    if (small && c.T * c.k > 4096) continue;  // compute-sanitizer run: the small cases only
    const bool tmaA = !c.gather && c.epi != Epilogue::kSwiglu;
    for (int pass = 0; pass < (tmaA ? 2 : 1); pass++) {
      sm90Tuning().activationTma = pass == 0;
      if (tmaA) printf("  (activation rows by %s)\n", pass == 0 ? "TMA" : "cp.async");
      for (int config = pass == 0 && kWithMma ? -1 : 0; config < sm90ConfigCount(); config++) {
        if (c.elem == DType::kBFloat16) checkCase<__nv_bfloat16>(c, config, rng);
        else checkCase<__half>(c, config, rng);
      }
    }
    sm90Tuning().activationTma = true;
  }
  // The W4A16 wgmma kernel (K % 64 == 0 cases; both configurations, with and without zero points), plus odd N.
  const Case int4Cases[] = {
      {"int4 odd N bias empty", DType::kBFloat16, Epilogue::kStore, DType::kFloat32, 300, 3, 9, 200, 128, true, false, true, false, 0.5, 4, 0},
      {"int4 f16 swiglu odd", DType::kFloat16, Epilogue::kSwiglu, DType::kFloat16, 90, 2, 5, 208, 192, true, false, true, true, 0.0, 0, 0},
  };
  std::vector<const Case*> q;
  for (const Case& c : cases) if (c.K % 64 == 0) q.push_back(&c);
  for (const Case& c : int4Cases) q.push_back(&c);
  for (const Case* c : q) {
    if (small && c->T * c->k > 4096) continue;
    for (int zeros = 0; zeros < 2; zeros++) {
      for (gInt4Config = 0; gInt4Config < 2; gInt4Config++) {
        gInt4Zeros = zeros == 1;
        if (c->elem == DType::kBFloat16) checkCase<__nv_bfloat16>(*c, 0, rng);
        else checkCase<__half>(*c, 0, rng);
      }
    }
  }
  gInt4Config = -1;
  printf("correctness: %d failing\n", failures);
  if (timing) {
    timeShapes(4096, rng, 9);
    timeShapes(256, rng, 9);
    timeShapes(1024, rng, 5);
  }
  return failures ? 1 : 0;
}
