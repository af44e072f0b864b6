/**
 * The part of the end-to-end spec subset (e2e_specs.ts) that covers the host forward's copy paths and the split
 * forward through the layer: host copies, device-resident activations, the FusedMoE layer on the cuda executor. For
 * a GPU batch with little time.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import './device_status.spec.js';
import '../../spec/cuda/cuda_host_copies.spec.js';
import '../../spec/cuda/cuda_device_activation.spec.js';
import '../../spec/cuda/cuda_layer_executor.spec.js';
