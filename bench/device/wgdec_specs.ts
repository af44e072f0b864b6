/**
 * The wgdec GPU batch's WebGPU spec set (bundled by pack_wgdec.sh): the decode path's suites against the float64
 * reference on the GPU's own WebGPU adapter (dawn.node, Vulkan) instead of CI's SwiftShader.
 */
jasmine.DEFAULT_TIMEOUT_INTERVAL = 120_000;

import '../../spec/helpers/setup.js';
import '../../spec/helpers/report_errors.js';
import '../../spec/webgpu/decode_webgpu.spec.js';
import '../../spec/webgpu/decode_webgpu_packed.spec.js';
