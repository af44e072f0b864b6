// The gradient suite on the composite path (tfjs's autodiff through plain tfjs ops), run on the cpu backend.
import {describeGradientConformance} from './gradient_conformance.js';

describeGradientConformance('cpu composite', {backend: 'cpu', composite: true, scale: 'full'});
