/**
 * compute-sanitizer memcheck set for the families' semantics in the CUDA kernels (small scale: memcheck runs
 * kernels far slower): the native forward with every new option, the routing kernel's sparsemixer and
 * group-limited paths, section 11's family fixtures through the layer executor, and the op conformance suite on the
 * CUDA op kernels (small scale).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_family_semantics.spec.js';
import '../../spec/cuda/cuda_families.spec.js';
import '../../spec/cuda/cuda_kernels.spec.js';
