/**
 * The prefill path's spec set for the hopper lane's GPU runs, plain and under compute-sanitizer memcheck (one bundle:
 * the batch folder's size limit): the op kernels, the layer at prefill sizes (dense router GEMM and its split-K
 * reduction, permute, combine) and the wgmma GEMM inside the layer ('on' sends the small shapes through it too: the
 * down GEMM's combine epilogue among them).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_kernels.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
import '../../spec/cuda/cuda_prefill_front.spec.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
