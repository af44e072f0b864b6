/**
 * The compute-sanitizer memcheck set of the end-to-end lane (small): the host copy paths (staged, mapped, pinned,
 * pageable, the split forward) and the device-resident activations; memcheck_specs.ts adds the decode and packed
 * expert tiles.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_host_copies.spec.js';
import '../../spec/cuda/cuda_device_activation.spec.js';
