/**
 * The cudapre lane's compute-sanitizer memcheck set (TFJS_MOE_SPEC_SCALE=small): the wgmma GEMM on clusters of two
 * blocks (TMA multicast into the peer block, arrivals on its barriers) in the layer, then the layer at prefill sizes
 * (the router's cp.async tiles, split-K).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_wgmma_cluster.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
