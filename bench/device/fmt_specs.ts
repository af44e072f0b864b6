/**
 * The native-format CUDA spec set of the cudafmt GPU batches: int8 / mxfp4 experts and the int4 and decode-GEMM
 * suites whose tile code they share.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_decode_gemm.spec.js';
