/**
 * The CUDA specs of the prefill path (the hopper lane's GPU runs, bundled into one file): the op kernels (permute and
 * combine among them), the layer at prefill sizes (dense router GEMM, one-pass permute, vector combine), the wgmma
 * GEMM inside the layer, the fused layer, int4 experts. The full set is device_specs.ts.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 120_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_kernels.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
import '../../spec/cuda/cuda_fused_moe.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import './device_status.spec.js';
