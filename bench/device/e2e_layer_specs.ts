/**
 * The FusedMoE layer conformance on the cuda executor (spec/cuda/cuda_fused_moe.spec.ts), bundled alone: the
 * second, longer part of the end-to-end GPU run (e2e_specs.ts is the first).
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_fused_moe.spec.js';
