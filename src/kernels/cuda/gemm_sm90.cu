// Instantiations and host launcher of the sm_90a wgmma grouped GEMM. Built with -gencode arch=compute_90a,code=sm_90a
// only (scripts/build-cuda.mjs): the kernels are empty for any other architecture, and the launcher checks the device.
#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "gemm_sm90.cuh"
#include "gemm_sm90.h"

namespace moe {

Sm90Tuning& sm90Tuning() {
  static Sm90Tuning t;
  return t;
}

namespace {

using sm90::Sm90Config;

struct Sm90Choice {
  int bm, bn, stages, cluster;
  const char* name;
};
// Index = the configuration's number for sm90Tuning().forceConfig. cluster 2: blocks in pairs sharing the weight
// tile by TMA multicast (gemm_sm90.cuh, CLUSTER), the tile list of height 2 bm.
constexpr Sm90Choice kConfigs[] = {
    {128, 128, 6, 1, "128x128x6"},
    {128, 256, 4, 1, "128x256x4"},
    {64, 256, 5, 1, "64x256x5"},
    {64, 128, 8, 1, "64x128x8"},
    {64, 256, 5, 2, "64x256x5 cluster 2"},
};

// Tile choice as data: the first row whose bound admits the expected rows per expert wins, with one configuration
// for the SwiGLU GEMM (up_gate: long K, bf16 out) and one for the others (down: short K, float32 out); -1 leaves the
// problem to the mma.sync GEMM under 'auto'. Measured on the H200, Qwen3-30B-A3B expert GEMMs (batch F,
// BENCHMARKS.md): up_gate 64x256 at T = 256 / 1024 / 4096 (0.203 / 0.243 / 0.532 ms vs mma.sync 0.223 / 0.368 /
// 0.934); down 64x256 at T = 256 (0.106 vs 0.123), 128x128 at 1024 / 4096 (0.126 / 0.344 vs 0.223 / 0.571); from
// session 5 (batch M, whole layer, TFJS_MOE_CUDA_SM90_TILES A/B) down 128x256 above 96 rows: T = 4096 layer 0.9543 ->
// 0.9361 bf16, 0.9586 -> 0.9433 int4; from session 6 (batches N and O, same A/B) 64x128 for both GEMMs at 9..96
// rows, as batch M had measured it too: T = 256 bf16 layer 0.3635 -> 0.3560 ms (M: 0.3631 -> 0.3565); from session 9
// (batches B1 and B2, the same A/B) the down GEMM on 64x256 tiles at 9..96 rows: T = 256 bf16 layer 0.3508 / 0.3516
// -> 0.3487 (B1), median 0.3533 -> 0.3502 (B2), the down GEMM 116.1 -> 111.8 us in ncu (DRAM 75.9% -> 79.0% of peak).
// Decode sizes keep the mma.sync 16-row tiles (the layer at T = 1 and 16 was no faster with 64-row wgmma tiles).
struct Sm90Row {
  int maxRowsPerSegment;
  int swigluConfig, otherConfig;
};
constexpr Sm90Row kTable[] = {
    {8, -1, -1},
    {96, 3, 2},
    {1 << 30, 2, 1},
};
// The table as sessions 7 and 8 shipped it (TFJS_MOE_CUDA_SM90_TABLE=s7, A/B timing of a table change in one
// process).
constexpr Sm90Row kTableSession7[] = {
    {8, -1, -1},
    {96, 3, 3},
    {1 << 30, 2, 1},
};
// 'on' (every shape): the same, and 64x128 tiles at decode sizes.
constexpr Sm90Row kTableOn[] = {
    {8, 3, 3},
    {96, 2, 2},
    {1 << 30, 2, 0},
};

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A [rows][K] half matrix (row stride ld elements) as a 2D tensor map: boxes of 64 K elements x boxRows rows,
// 128-byte swizzle, elements past the matrix read as zeros.
CUtensorMap tileMap(const GemmProblem& p, const void* base, long long rows, int ld, int boxRows) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(p.K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(ld) * 2};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(sm90::kBK), static_cast<cuuint32_t>(boxRows)};
  const cuuint32_t elementStrides[2] = {1, 1};
  const CUtensorMapDataType type =
      p.elem == DType::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encoder()(&map, type, 2, const_cast<void*>(base), dims, strides, box, elementStrides,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) throw CudaError("cuTensorMapEncodeTiled failed (" + std::to_string(static_cast<int>(r)) + ")");
  return map;
}
// B [experts * N][K]: rows past the last expert read as zeros; a box that crosses into the next expert only fills
// columns >= N, which no epilogue stores.
CUtensorMap weightMap(const GemmProblem& p, int bn) {
  return tileMap(p, p.B, static_cast<long long>(p.seg.offsets ? p.seg.numExperts : 1) * p.N, p.K, bn);
}

// Whether the activation rows come by TMA too: no gather, the sm90Tuning switch on, the gathered-rows kernel left for
// kSwiglu (whose A is gathered in the layer; the dense shared-expert up_gate keeps cp.async, one instantiation less).
bool activationsByTma(const GemmProblem& p) {
  return sm90Tuning().activationTma && p.aRowIndex == nullptr && p.epilogue != Epilogue::kSwiglu;
}

int smCount() {
  static const int sms = [] {
    int dev = 0, n = 0;
    MOE_CUDA(cudaGetDevice(&dev));
    MOE_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return sms;
}

// How many clusters of CLUSTER blocks of this kernel the device runs at once (one block per SM: CLUSTER = 1 is
// the SM count; pairs must sit in one GPC, which can leave an SM idle). Asked once per kernel (at its first, eager
// launch: the layer runs a forward before it captures one).
template <int CLUSTER, typename Kernel>
int residentClusters(Kernel kernel, int smem) {
  if (CLUSTER == 1) return smCount();
  static std::map<const void*, int> known;
  const auto it = known.find(reinterpret_cast<const void*>(kernel));
  if (it != known.end()) return it->second;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(smCount() / CLUSTER * CLUSTER);
  cfg.blockDim = dim3(sm90::kThreads);
  cfg.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = CLUSTER;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  int n = 0;
  MOE_CUDA(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg));
  if (n <= 0) throw CudaError("wgmmaGemmKernel: no cluster of " + std::to_string(CLUSTER) + " blocks fits");
  known.emplace(reinterpret_cast<const void*>(kernel), n);
  return n;
}

template <typename Elem, typename OutT, Epilogue EPI, int BM, int BN, int STAGES, bool A_TMA, bool INT4 = false,
          int CLUSTER = 1>
void launchConfig(const GemmProblem& p, cudaStream_t stream) {
  using Cfg = Sm90Config<BM, BN, STAGES, INT4>;
  auto kernel = sm90::wgmmaGemmKernel<Elem, OutT, EPI, BM, BN, STAGES, A_TMA, INT4, CLUSTER>;
  // Room for the segment tables in shared memory where it fits (the kernel reads them from global memory otherwise).
  constexpr int kMaxSmem = 227 * 1024;
  const int withTables = Cfg::kSmemBytes + sm90::segmentTableBytes(p);
  const int smem = withTables <= kMaxSmem ? withTables : Cfg::kSmemBytes;
  static int raised = 0;
  if (smem > raised) {
    MOE_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    raised = smem;
  }
  // Tiles of the list (height BM x CLUSTER: a cluster takes one), at most one per SM (per cluster of SMs the
  // device can hold at once).
  const int colTiles = ceilDiv(p.N, BN);
  const int listBm = BM * CLUSTER;
  const long long tiles =
      static_cast<long long>(p.seg.offsets ? maxRowTiles(p.M, p.seg.numExperts, listBm) : ceilDiv(p.M, listBm)) *
      colTiles;
  const int grid = static_cast<int>(std::min<long long>(tiles, residentClusters<CLUSTER>(kernel, smem))) * CLUSTER;
  if (grid == 0) return;
  CUtensorMap bMap;
  if (INT4) std::memset(&bMap, 0, sizeof(bMap));  // the int4 producer reads the codes itself
  else bMap = weightMap(p, BN / CLUSTER);
  launchKernelClustered("wgmmaGemmKernel", kernel, dim3(grid), dim3(sm90::kThreads), smem, stream, CLUSTER, p, bMap,
                        A_TMA ? tileMap(p, p.A, p.M, p.lda, BM) : bMap);
}

template <typename Elem, typename OutT, Epilogue EPI, int BM, int BN, int STAGES, int CLUSTER = 1>
void launchShape(const GemmProblem& p, cudaStream_t stream) {
  if constexpr (EPI != Epilogue::kSwiglu) {
    if (activationsByTma(p)) return launchConfig<Elem, OutT, EPI, BM, BN, STAGES, true, false, CLUSTER>(p, stream);
  }
  launchConfig<Elem, OutT, EPI, BM, BN, STAGES, false, false, CLUSTER>(p, stream);
}

template <typename Elem, typename OutT, Epilogue EPI>
void launchEpi(const GemmProblem& p, int config, cudaStream_t stream) {
  switch (config) {
    case 0: launchShape<Elem, OutT, EPI, 128, 128, 6>(p, stream); break;
    case 1: launchShape<Elem, OutT, EPI, 128, 256, 4>(p, stream); break;
    case 2: launchShape<Elem, OutT, EPI, 64, 256, 5>(p, stream); break;
    case 4: launchShape<Elem, OutT, EPI, 64, 256, 5, 2>(p, stream); break;
    default: launchShape<Elem, OutT, EPI, 64, 128, 8>(p, stream); break;
  }
}

// The int4 (W4A16) configurations: index 0 = 64x128x6, 1 = 64x256x4 (Sm90Tuning.int4Config).
template <typename Elem, typename OutT, Epilogue EPI>
void launchInt4Epi(const GemmProblem& p, int config, cudaStream_t stream) {
  if (config == 0) launchConfig<Elem, OutT, EPI, 64, 128, 6, false, true>(p, stream);
  else launchConfig<Elem, OutT, EPI, 64, 256, 4, false, true>(p, stream);
}

template <typename Elem>
void launchInt4Elem(const GemmProblem& p, int config, cudaStream_t stream) {
  switch (p.epilogue) {
    case Epilogue::kStore: launchInt4Epi<Elem, float, Epilogue::kStore>(p, config, stream); break;
    case Epilogue::kAccumulate: launchInt4Epi<Elem, float, Epilogue::kAccumulate>(p, config, stream); break;
    case Epilogue::kSwiglu:
      if (p.out == DType::kFloat32) launchInt4Epi<Elem, float, Epilogue::kSwiglu>(p, config, stream);
      else launchInt4Epi<Elem, Elem, Epilogue::kSwiglu>(p, config, stream);
      break;
    case Epilogue::kCombine: break;  // refused by the caller
  }
}

template <typename Elem>
void launchElem(const GemmProblem& p, int config, cudaStream_t stream) {
  switch (p.epilogue) {
    case Epilogue::kStore: launchEpi<Elem, float, Epilogue::kStore>(p, config, stream); break;
    case Epilogue::kAccumulate: launchEpi<Elem, float, Epilogue::kAccumulate>(p, config, stream); break;
    case Epilogue::kSwiglu:
      if (p.out == DType::kFloat32) launchEpi<Elem, float, Epilogue::kSwiglu>(p, config, stream);
      else launchEpi<Elem, Elem, Epilogue::kSwiglu>(p, config, stream);
      break;
    case Epilogue::kCombine: break;  // refused by the caller
  }
}

// sm_90 exactly (sm_90a code runs on no other device), the kernel image present, the driver's tensor-map encoder.
bool deviceReady() {
  static const bool ready = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return (void)cudaGetLastError(), false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      return (void)cudaGetLastError(), false;
    }
    if (major != 9 || minor != 0) return false;
    cudaFuncAttributes attr;
    auto probe = sm90::wgmmaGemmKernel<__nv_bfloat16, float, Epilogue::kStore, 128, 128, 6, false>;
    if (cudaFuncGetAttributes(&attr, probe) != cudaSuccess) {
      return (void)cudaGetLastError(), false;
    }
    return attr.binaryVersion >= 90 && encoder() != nullptr;
  }();
  return ready;
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

bool sm90GemmReady() { return deviceReady(); }

int sm90ConfigCount() { return static_cast<int>(sizeof(kConfigs) / sizeof(kConfigs[0])); }
const char* sm90ConfigName(int index) {
  return index >= 0 && index < sm90ConfigCount() ? kConfigs[index].name : "?";
}

// TFJS_MOE_CUDA_WGMMA_INT4 (A/B timing): '1' / '2' run int4 problems of 9..96 rows per expert on the 64x128x6 /
// 64x256x4 int4 configuration; unset or '0': not at all (H200 batch I, T = 256: its producer-side dequantization
// made the layer 0.499 ms against 0.366 on the mma.sync W4A16 tiles). Read at each launch.
static int int4ConfigFromEnv() {
  const char* v = std::getenv("TFJS_MOE_CUDA_WGMMA_INT4");
  if (v == nullptr) return -1;
  return v[0] == '1' ? 0 : v[0] == '2' ? 1 : -1;
}

bool launchGroupedGemmSm90Int4(const GemmProblem& p, cudaStream_t stream) {
  const Sm90Tuning& t = sm90Tuning();
  if (t.mode == Sm90Gemm::kOff || !tuning().int4Mma) return false;
  if (p.bInt4 == nullptr || p.bScales == nullptr || p.elem == DType::kFloat32 || p.epilogue == Epilogue::kCombine ||
      p.kSplit > 1 || p.combineOut != nullptr || p.combineAdd != nullptr || p.aCopy != nullptr) {
    return false;  // (its epilogue has no combineAdd: the mma.sync tiles take those)
  }
  if (p.K <= 0 || p.K % kBK64 != 0 || p.lda % 8 != 0 || !aligned16(p.A) || p.M <= 0 || p.N <= 0) return false;
  if (p.groupSize != 32 && (p.groupSize <= 0 || p.groupSize % kBK64 != 0)) return false;
  if (static_cast<long long>(p.seg.offsets ? p.seg.numExperts : 1) * p.N >= (1LL << 31)) return false;
  int config;
  if (t.int4Config >= kSm90Int4Forced) {
    config = t.int4Config - kSm90Int4Forced;
  } else {
    // Expected rows per expert: above 96 the GEMM is bound by the tensor cores and reads the dequantized copy
    // (launchGroupedGemmSm90); at decode sizes (8 or fewer) the streaming int4 kernels serve it.
    const int rows = p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M;
    if (rows <= 8 || rows > 96) return false;
    config = t.int4Config >= 0 ? t.int4Config : int4ConfigFromEnv();
    if (config < 0) return false;
  }
  if (!deviceReady()) return false;
  if (p.elem == DType::kBFloat16) launchInt4Elem<__nv_bfloat16>(p, config, stream);
  else launchInt4Elem<__half>(p, config, stream);
  return true;
}

// TFJS_MOE_CUDA_SM90_TILES (A/B timing of the tile table in the whole layer): '<swiglu>,<other>' configuration
// indices (kConfigs) replacing the table's choice for every problem the table gives to this GEMM; unset: the table.
// Read at each launch, so one process can time several choices on the same weights (cuda_bench --ab 'env:...').
static int tilesFromEnv(bool swiglu) {
  const char* v = std::getenv("TFJS_MOE_CUDA_SM90_TILES");
  if (v == nullptr || v[0] < '0' || v[0] > '9' || v[1] != ',' || v[2] < '0' || v[2] > '9') return -1;
  const int c = (swiglu ? v[0] : v[2]) - '0';
  return c < sm90ConfigCount() ? c : -1;
}

// The configuration launchGroupedGemmSm90 runs p on, or -1 where it declines.
static int chooseConfig(const GemmProblem& p) {
  const Sm90Tuning& t = sm90Tuning();
  if (t.mode == Sm90Gemm::kOff) return -1;
  if (p.elem == DType::kFloat32 || p.epilogue == Epilogue::kCombine || p.kSplit > 1 || p.aCopy != nullptr) return -1;
  if (p.combineOut != nullptr) return -1;  // the decode down GEMM's combine tail is the mma.sync kernels'
  if (p.combineAdd != nullptr && (p.epilogue != Epilogue::kStore || p.out != DType::kFloat32 ||
                                  p.seg.offsets == nullptr || p.rowToPair == nullptr || p.pairWeight == nullptr ||
                                  p.topK < 1)) {
    return -1;
  }
  if (p.K % 8 != 0 || p.lda % 8 != 0 || !aligned16(p.A) || !aligned16(p.B)) return -1;
  if (p.M <= 0 || p.N <= 0 || p.K <= 0) return -1;
  if (static_cast<long long>(p.seg.offsets ? p.seg.numExperts : 1) * p.N >= (1LL << 31)) return -1;
  if (!deviceReady()) return -1;
  int config = t.forceConfig;
  if (config < 0 || config >= sm90ConfigCount()) {
    const int rows = p.rowsPerSegmentHint > 0 ? p.rowsPerSegmentHint : p.M;
    config = -1;
    const char* tableEnv = std::getenv("TFJS_MOE_CUDA_SM90_TABLE");
    const bool session7 = tableEnv != nullptr && std::strcmp(tableEnv, "s7") == 0;
    const Sm90Row* table = t.mode == Sm90Gemm::kOn ? kTableOn : session7 ? kTableSession7 : kTable;
    for (int i = 0;; i++) {
      if (rows <= table[i].maxRowsPerSegment) {
        config = p.epilogue == Epilogue::kSwiglu ? table[i].swigluConfig : table[i].otherConfig;
        break;
      }
    }
    if (config < 0) return -1;
    const int fromEnv = tilesFromEnv(p.epilogue == Epilogue::kSwiglu);
    if (fromEnv >= 0) config = fromEnv;
    // 'auto': a layer with int4 expert weights leaves the rows the int4 (W4A16) kernels serve to them (they read a
    // quarter of the bytes); this GEMM reads the dequantized copy.
    if (t.mode == Sm90Gemm::kAuto && p.bInt4 != nullptr && rows <= 96) return -1;
    // 'auto': a problem of fewer tiles than SMs (a small dense GEMM: a shared expert at a few tokens) streams its
    // weights faster on the mma.sync GEMM's many small tiles.
    if (t.mode == Sm90Gemm::kAuto) {
      const Sm90Choice& c = kConfigs[config];
      const long long rowTiles = p.seg.offsets ? maxRowTiles(p.M, p.seg.numExperts, c.bm) : ceilDiv(p.M, c.bm);
      if (rowTiles * ceilDiv(p.N, c.bn) < smCount()) return -1;
    }
  }
  return config;
}

bool sm90GemmTakes(const GemmProblem& p) { return chooseConfig(p) >= 0; }

bool launchGroupedGemmSm90(const GemmProblem& p, cudaStream_t stream) {
  const int config = chooseConfig(p);
  if (config < 0) return false;
  if (p.elem == DType::kBFloat16) launchElem<__nv_bfloat16>(p, config, stream);
  else launchElem<__half>(p, config, stream);
  return true;
}

}  // namespace moe
