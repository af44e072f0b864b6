/**
 * The CUDA spec run on the GPU machine, bundled into one file (the machine has node but no node_modules):
 * the spec helpers, then every CUDA spec that needs no compiler or package resolution at run time.
 */
// Kernels run much slower under compute-sanitizer (TFJS_MOE_SPEC_SCALE=small marks that run).
jasmine.DEFAULT_TIMEOUT_INTERVAL = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300_000 : 60_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/cuda/cuda_kernels.spec.js';
import '../../spec/cuda/cuda_fused_moe.spec.js';
import '../../spec/cuda/host_fallback.spec.js';
import '../../spec/cuda/cuda_layer_executor.spec.js';
import '../../spec/cuda/cuda_device_activation.spec.js';
import '../../spec/cuda/cuda_decode_gemm.spec.js';
import '../../spec/cuda/cuda_host_copies.spec.js';
import '../../spec/cuda/cuda_int4_decode.spec.js';
import '../../spec/cuda/cuda_packed_experts.spec.js';
import '../../spec/cuda/cuda_family_semantics.spec.js';
import '../../spec/cuda/cuda_families.spec.js';
import '../../spec/cuda/cuda_unsupported_options.spec.js';
import '../../spec/cuda/cuda_wgmma.spec.js';
import '../../spec/cuda/cuda_prefill_kernels.spec.js';
import '../../spec/cuda/cuda_prefill_front.spec.js';
import '../../spec/cuda/cuda_decode_tiles.spec.js';
import '../../spec/cuda/cuda_wgmma_cluster.spec.js';
import './device_status.spec.js';
