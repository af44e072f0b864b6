// Grouped GEMM kernels over device-side segments. Two math cores share one tile scheduler and one epilogue:
//  - mmaGemmKernel: bf16/f16 operands on tensor cores (mma.sync m16n8k16, f32 accumulation), cp.async
//    multi-stage pipeline, ldmatrix fragment loads. Used on sm_80..sm_90 alike.
//  - fmaGemmKernel: exact float32 (FMA on CUDA cores, no TF32), register-staged double buffering, so the
//    float32 path meets the float32 GEMM tolerance rather than TF32's ~1e-3.
// A block's row tile is found on the device (binary search over the tile prefix the permute wrote), so the grid
// is sized from static bounds and nothing is read back to the host; surplus blocks return at once. With a small
// tile height every active expert's weights are streamed exactly once: that is the decode path.
#pragma once

#include "grouped_gemm.h"
// The parts, each in its own header: scheduler (and the row gather), epilogue, PTX wrappers, the two math cores.
#include "gemm_fma_core.cuh"
#include "gemm_mma_core.cuh"
#include "gemm_scheduler.cuh"
