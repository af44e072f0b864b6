/**
 * The cudapre lane's GPU spec set (prefill GEMM tiles on int4 / int8 / mxfp4 codes and bf16): the int4 suite (every
 * int4 tile shape, the TFJS_MOE_CUDA_INT4_TILES A/B shapes), the packed-experts suite, the wgmma layer and the prefill
 * kernels. Plain and, with TFJS_MOE_SPEC_SCALE=small, under compute-sanitizer memcheck.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';

