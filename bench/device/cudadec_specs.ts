/**
 * The decode-GEMM spec set of the cudadec lane's GPU runs (small enough to run plain and under compute-sanitizer
 * memcheck in a short batch): the 16 x 64 decode tiles' switches (fragment buffers, stages), the decode GEMM
 * variants in the layer (bf16 / f16 weights) and the native int4 experts at decode and mid sizes.
 * CUDADEC_SPECS=<substring>[|<substring>...]: only the specs whose full name contains one (the memcheck step's subset; one bundle
 * keeps the batch folder small).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;
const only = process.env.CUDADEC_SPECS;
if (only) {
  const names = only.split('|');
  jasmine.getEnv().configure({specFilter: spec => names.some(n => spec.getFullName().includes(n))});
}

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_decode_tiles.spec.js';
import '../../spec/cuda/cuda_decode_gemm.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
