/**
 * The browser suite (npm run test:browser): the same conformance suites as in Node, against the same float64
 * reference, on tfjs's webgpu backend (SwiftShader in CI: small shapes) and on cpu, the gradient suite on webgpu,
 * the decode path (programs per forward, vs the reference), plus the large-weights case
 * under the default 128 MiB storage-binding limit. scripts/test-browser.mjs bundles this file and drives the page.
 */
import './setup_browser.js';
import '../helpers/report_errors.js';
import './environment.js';
import '../webgpu/kernels_webgpu.spec.js';
import '../webgpu/forward_webgpu.spec.js';
import '../webgpu/decode_webgpu.spec.js';
import '../webgpu/decode_webgpu_packed.spec.js';
import '../webgpu/quantized_webgpu.spec.js';
import './conformance_browser.js';
import '../gradients/webgpu_gradients.spec.js';
import './large_weights.js';
import '../robust/routing_edges.spec.js';
import '../robust/weight_grad_edges.spec.js';
import '../robust/invalid_values.spec.js';
import '../robust/fuzz.spec.js';

import {runJasmine} from './jasmine_boot.js';

void runJasmine();
