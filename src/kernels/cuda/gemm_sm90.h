// Host side of the sm_90a grouped GEMM (gemm_sm90.cuh): whether it runs a problem, and its tile choice as data.
#pragma once

#include "grouped_gemm.h"

namespace moe {

// MOE_CUDA_WGMMA (kernels/cuda/flags_cuda.ts): 'auto' runs the wgmma GEMM on an sm_90 device where its tile table
// (gemm_sm90.cu) measured it faster than the mma.sync GEMM (more than 8 expected rows per expert); 'on' wherever it
// can run (decode sizes too: specs run every shape through it); 'off' never.
enum class Sm90Gemm : int { kOff = 0, kAuto = 1, kOn = 2 };
struct Sm90Tuning {
  Sm90Gemm mode = Sm90Gemm::kAuto;
  int forceConfig = -1;  // index into the configuration list (benchmark harness), -1: the table's choice
  bool activationTma = true;  // rows that need no gather come by TMA (false: cp.async, for A/B timing)
  // The int4 (W4A16) kernel's configuration: 0 = 64x128x6, 1 = 64x256x4; -1: TFJS_MOE_CUDA_WGMMA_INT4 / the default;
  // kSm90Int4Forced + 0 / 1 (harness): that configuration at any rows per expert.
  int int4Config = -1;
};
constexpr int kSm90Int4Forced = 16;
constexpr int kBK64 = 64;  // the wgmma k tile
Sm90Tuning& sm90Tuning();

// Launches p on the wgmma kernel and returns true, or returns false (nothing launched) when the device is not
// sm_90, the addon has no sm_90a code, the mode or the table says no, or p is outside what the kernel takes
// (half operands, K % 8 == 0, lda % 8 == 0, 16-byte aligned A and B, no split-K, kStore/kSwiglu/kAccumulate, no
// combine tail). prefetchB / bStreamOnce (mma.sync hints) are ignored. The only launcher that takes
// GemmProblem.combineAdd (segmented float32 kStore with rowToPair, pairWeight and topK).
bool launchGroupedGemmSm90(const GemmProblem& p, cudaStream_t stream);
// Whether launchGroupedGemmSm90 would launch p (nothing launched).
bool sm90GemmTakes(const GemmProblem& p);

// The W4A16 wgmma GEMM (B from GemmProblem.bInt4, dequantized into shared memory by the producer warpgroup): launches
// p and returns true for half operands with int4 codes, K % 64 == 0, groupSize 32 or a multiple of 64, and between 9
// and 96 expected rows per expert; false otherwise (nothing launched). Off by default (see int4ConfigFromEnv in
// gemm_sm90.cu: TFJS_MOE_CUDA_WGMMA_INT4 selects it for A/B), and with MOE_CUDA_WGMMA 'off' or MOE_CUDA_INT4_MMA off.
bool launchGroupedGemmSm90Int4(const GemmProblem& p, cudaStream_t stream);

// Whether the wgmma GEMM can run here at all: an sm_90 device, sm_90a code in this build, the driver's tensor-map
// encoder (cudaStatus().wgmma).
bool sm90GemmReady();

// The kernel configurations, for the harness: count and a name per index ("128x256x4" = BM x BN x stages).
int sm90ConfigCount();
const char* sm90ConfigName(int index);

}  // namespace moe
