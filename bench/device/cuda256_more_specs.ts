/**
 * The cuda256 lane's second GPU spec set (plain only): the wgmma layer suite and the op kernels (the top-k op's
 * launcher changed with the split-K sum).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
import '../../spec/cuda/cuda_kernels.spec.js';
