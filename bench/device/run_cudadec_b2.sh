#!/usr/bin/env bash
# The cudadec lane's second GPU batch (session 9, B2; the same addon as B1, whose specs and memcheck passed): a wider
# A/B of today's decode switches at T = 1 and 16 (bf16, int4) and ncu of the decode front and combine kernels.
HERE=$(cd "$(dirname "$0")" && pwd)
FR='"env:TFJS_MOE_CUDA_DECODE_FRONT"'; C='"env:TFJS_MOE_CUDA_DECODE_COMBINE"'; L='"env:TFJS_MOE_CUDA_L2_PREFETCH"'
TI='"MOE_CUDA_GEMM_TILES"'; FU='"MOE_CUDA_FUSE"'; BN='"env:TFJS_MOE_CUDA_DECODE_BN"'
export AB="{},{$C:\"add\"},{\"MOE_CUDA_PDL\":false},{$TI:\"mma32\"},{$TI:\"deep\"},{$TI:\"shallow\"},{$TI:\"k128\"},\
{$TI:\"no-preload\"},{$TI:\"stream\"},{$TI:\"stream8\"},{$L:\"0\"},{$L:\"1\",$FU:\"combine\"},{$BN:\"48\"},{$C:\"tail\"},\
{$FR:\"route2\"},{$FR:\"route2\",\"MOE_CUDA_PDL\":false},{$C:\"tail\",\"MOE_CUDA_PDL\":false}"
export SPECS=0 NCU_FRONT=1
exec bash "$HERE/run_cudadec.sh"
