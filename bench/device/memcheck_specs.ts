/**
 * The compute-sanitizer memcheck spec set (small: memcheck runs kernels far slower): the CUDA end-to-end spec
 * (pinned staging, pinned output blocks, device-resident activations, routing ids, tuning flags), the decode
 * streaming GEMM and the packed-expert (int4, int8, mxfp4) tiles.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_device_activation.spec.js';
import '../../spec/cuda/cuda_decode_gemm.spec.js';
import '../../spec/cuda/cuda_host_copies.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
