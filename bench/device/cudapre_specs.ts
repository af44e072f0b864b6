/**
 * The cudapre lane's GPU spec set (the prefill GEMM tiles: int4 codes, the wgmma GEMM in the layer and its combine
 * epilogue, the prefill front): the int4 suite (every int4 tile shape, the TFJS_MOE_CUDA_INT4_TILES /
 * TFJS_MOE_CUDA_CODE_PREFETCH A/B switches), the packed-experts suite (int8 / mxfp4 codes: the same tile code), the
 * wgmma layer, the prefill kernels and the op kernels.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
import '../../spec/cuda/cuda_kernels.spec.js';
