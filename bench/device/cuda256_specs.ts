/**
 * The cuda256 lane's GPU spec set (run plain and under compute-sanitizer memcheck): the prefill front's session-9
 * switches and the layer at prefill sizes.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_prefill_front.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
