/**
 * The decode-GEMM spec set of the cudadec lane's GPU runs (small enough to run plain and under compute-sanitizer
 * memcheck in a short batch): the decode GEMM variants in the layer (bf16 / f16 weights, the GEMV kernel among
 * them) and the native int4 experts at decode and mid sizes.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_decode_gemm.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
