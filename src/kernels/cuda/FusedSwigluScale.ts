import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, FusedSwigluScaleInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readOptionalFloat32} from '../host_data.js';
import {getCudaAddon} from './loader.js';

export function fusedSwigluScaleCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const act = attrs as unknown as FusedSwigluScaleAttrs;
    const {x, scale} = inputs as unknown as FusedSwigluScaleInputs;
    const b = backend as KernelBackend;
    const [R, twoI] = x.shape;
    const out = getCudaAddon().swiglu(readFloat32(b, x), R, twoI / 2, readOptionalFloat32(b, scale),
                                      act.activation === 'clamped_swiglu', act.swigluAlpha, act.swigluLimit);
    return makeOutput(b, [R, twoI / 2], 'float32', out);
  };
  return {kernelName: FusedSwigluScale, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
