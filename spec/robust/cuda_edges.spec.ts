// The edge-value specs of the routing and dispatch ops on the cuda op kernels (GPU machine only; elsewhere one
// pending spec says so). The cuda op kernels hold ids and rowMap on the host, so they reject invalid ones in the
// cpu kernels' words (docs/semantics.md, common rules); routing edge values are as on every path.
import {cudaStatus} from 'tfjs-moe';

import {cudaPaths} from './cuda_paths.js';
import {invalidValueSpecs} from './invalid_values.spec.js';
import {describeOnPaths} from './paths.js';
import {routingEdgeSpecs} from './routing_edges.spec.js';

const paths = cudaPaths();
if (paths.length > 0) {
  describeOnPaths('robust: routing edge values', routingEdgeSpecs, paths);
  describeOnPaths('robust: invalid ids and rows', invalidValueSpecs, paths);
} else {
  describe('robust: edge values on the cuda op kernels', () => {
    it('run where CUDA is available', () => {
      const s = cudaStatus();
      pending(`CUDA unavailable (${s.code}): ${s.reason} (runs on the GPU machine)`);
    });
  });
}
