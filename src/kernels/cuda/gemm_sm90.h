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
};
Sm90Tuning& sm90Tuning();

// Launches p on the wgmma kernel and returns true, or returns false (nothing launched) when the device is not
// sm_90, the addon has no sm_90a code, the mode or the table says no, or p is outside what the kernel takes
// (half operands, K % 8 == 0, lda % 8 == 0, 16-byte aligned A and B, no split-K, kStore/kSwiglu/kAccumulate, no
// combine tail). prefetchB / bStreamOnce (mma.sync hints) are ignored.
bool launchGroupedGemmSm90(const GemmProblem& p, cudaStream_t stream);

// Whether the wgmma GEMM can run here at all: an sm_90 device, sm_90a code in this build, the driver's tensor-map
// encoder (cudaStatus().wgmma).
bool sm90GemmReady();

// The kernel configurations, for the harness: count and a name per index ("128x256x4" = BM x BN x stages).
int sm90ConfigCount();
const char* sm90ConfigName(int index);

}  // namespace moe
