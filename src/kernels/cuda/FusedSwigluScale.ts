import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleInputs} from '../kernel_names.js';
import {makeOutput, readF32, readOptionalF32} from './host_io.js';
import {getCudaAddon} from './loader.js';

export function fusedSwigluScaleCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend}: Parameters<KernelFunc>[0]) => {
    const {x, scale} = inputs as unknown as FusedSwigluScaleInputs;
    const b = backend as KernelBackend;
    const [R, twoI] = x.shape;
    const out = getCudaAddon().swiglu(readF32(b, x), R, twoI / 2, readOptionalF32(b, scale));
    return makeOutput(b, [R, twoI / 2], 'float32', out);
  };
  return {kernelName: FusedSwigluScale, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
