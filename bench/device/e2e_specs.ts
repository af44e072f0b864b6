/**
 * The CUDA spec subset of the end-to-end path (host copies, device-resident activations, the layer and its
 * executor), bundled into one file for a short GPU run (e2e_layer_specs.ts: the layer conformance on the cuda
 * executor, run after the benchmarks); device_specs.ts is the whole set.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import './device_status.spec.js';
import '../../spec/cuda/cuda_host_copies.spec.js';
import '../../spec/cuda/cuda_device_activation.spec.js';
import '../../spec/layers/fused_moe_device.spec.js';
import '../../spec/cuda/cuda_layer_executor.spec.js';
import '../../spec/cuda/cuda_unsupported_options.spec.js';
