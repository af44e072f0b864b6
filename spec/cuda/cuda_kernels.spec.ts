/**
 * The op conformance suite (every op vs the float64 reference, random shapes incl. empty experts and odd sizes,
 * edge cases, leak checks) on our CUDA kernels registered for 'tensorflow'. tfjs-node-gpu is not installable
 * here, so 'tensorflow' is the cpu backend registered under that name (see tensorflow_stand_in.ts); the kernels
 * only need host-memory tensors, as on the real backend. Pending, with the reason, where CUDA is unavailable.
 */
import {cudaStatus, registerCudaKernels} from 'tfjs-moe';

import {describeOpConformance} from '../ops/op_conformance.js';
import {registerHostStandIn, TF_BACKEND} from './tensorflow_stand_in.js';

const status = cudaStatus();
if (status.available) {
  registerHostStandIn(TF_BACKEND);
  registerCudaKernels(TF_BACKEND);
  // TFJS_MOE_SPEC_SCALE=small keeps the compute-sanitizer run short.
  describeOpConformance(`cuda on ${TF_BACKEND}`, {
    backend: TF_BACKEND, composite: false, scale: process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 'small' : 'full',
  });
} else {
  describe(`op conformance [cuda on ${TF_BACKEND}]`, () => {
    it('runs where CUDA is available', () => pending(`CUDA unavailable (${status.code}): ${status.reason}`));
  });
}
