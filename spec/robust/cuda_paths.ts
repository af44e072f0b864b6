/**
 * The cuda op kernels as an edge-value path: registered on the host stand-in for tfjs-node-gpu's 'tensorflow'
 * backend (spec/cuda/tensorflow_stand_in.ts). Node only; empty where CUDA is unavailable (everywhere but the GPU
 * machine), so the specs that add it run there and nowhere else.
 */
import {cudaStatus, registerCudaKernels} from 'tfjs-moe';

import {registerHostStandIn, TF_BACKEND} from '../cuda/tensorflow_stand_in.js';
import type {EdgePath} from './paths.js';

export function cudaPaths(): EdgePath[] {
  if (!cudaStatus().available) return [];
  registerHostStandIn(TF_BACKEND);
  registerCudaKernels(TF_BACKEND);
  return [{label: `cuda kernels on ${TF_BACKEND}`, backend: TF_BACKEND, composite: false, call: fn => fn()}];
}
