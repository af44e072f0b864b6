/**
 * The cudapre lane's GPU spec set (the sm_90a wgmma GEMM, its clusters of two blocks with the weight tile multicast,
 * the prefill front, the op kernels: every launch goes through launchKernelClustered): the wgmma layer suites, the
 * prefill kernels and the op kernels.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_wgmma_cluster.spec.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
import '../../spec/cuda/cuda_kernels.spec.js';
