/** For layers and other owners of weights: frees what kernels derived from weights that are disposed now. */
export {sweepWeightCaches as releaseDisposedWeightCopies} from '../kernels/weight_caches.js';
