/** stopGradient for callers above the kernels (the layer): the composite kernels' helper, as an op. */
export {stopGradient} from '../kernels/composite/stop_gradient.js';
