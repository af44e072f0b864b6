/**
 * The cudapre lane's compute-sanitizer memcheck set (TFJS_MOE_SPEC_SCALE=small): the int4 suite (the int4 tiles
 * this lane changed, every shape and A/B switch).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 300_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';

