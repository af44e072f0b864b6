// The gradient suite on webgpu, small scale (SwiftShader is slow): our kernels with our gradients, and the composite
// path with tfjs's autodiff. Pending with the reason where no webgpu backend is registered in the spec process.
import {describeGradientConformance} from './gradient_conformance.js';

describeGradientConformance('webgpu', {backend: 'webgpu', composite: false, scale: 'small'});
describeGradientConformance('webgpu composite', {backend: 'webgpu', composite: true, scale: 'small'});
