// The gradient suite on webgpu, small scale (SwiftShader is slow): our kernels with our gradients, and the composite
// path with tfjs's autodiff. Pending with the reason where no WebGPU adapter exists (initWebGPU says why).
import {initWebGPU} from '../webgpu/webgpu_env.js';
import {describeGradientConformance} from './gradient_conformance.js';

describe('webgpu gradients', () => {
  // The suite finds the backend by its factory, which tfjs-backend-webgpu registers once navigator.gpu exists.
  beforeAll(async () => {
    await initWebGPU();
  }, 300_000);
  describeGradientConformance('webgpu', {backend: 'webgpu', composite: false, scale: 'small'});
  describeGradientConformance('webgpu composite', {backend: 'webgpu', composite: true, scale: 'small'});
});
