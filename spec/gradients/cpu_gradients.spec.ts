// The gradient suite on the cpu backend's kernels of ours (our registered gradients).
import {describeGradientConformance} from './gradient_conformance.js';

describeGradientConformance('cpu', {backend: 'cpu', composite: false, scale: 'full'});
