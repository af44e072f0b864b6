import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, FusedSwigluScaleInputs, PLAIN_SWIGLU} from '../kernel_names.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';
import {makeOutput, readFloat32} from '../host_data.js';

export const fusedSwigluScale: KernelFunc = ({inputs, backend, attrs}) => {
  const {x, scale} = inputs as unknown as FusedSwigluScaleInputs;
  const [numRows, twiceIntermediate] = x.shape;
  const intermediate = twiceIntermediate / 2;
  const out = fusedSwigluScaleImpl(
      readFloat32(backend, x), numRows, intermediate, scale == null ? null : readFloat32(backend, scale),
      (attrs as unknown as FusedSwigluScaleAttrs).activation == null ? PLAIN_SWIGLU : attrs as unknown as FusedSwigluScaleAttrs);
  return makeOutput(backend, [numRows, intermediate], 'float32', out);
};

export const fusedSwigluScaleConfig: KernelConfig =
    {kernelName: FusedSwigluScale, backendName: 'cpu', kernelFunc: fusedSwigluScale};
