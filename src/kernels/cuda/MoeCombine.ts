import type {KernelBackend, KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32, readOptionalFloat32} from '../host_data.js';
import {getCudaAddon} from './loader.js';

export function moeCombineCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {y, rowMap, topkWeights, topkIds, downProjBias} = inputs as unknown as MoeCombineInputs;
    const {weightsApplied} = attrs as unknown as MoeCombineAttrs;
    const b = backend as KernelBackend;
    const [R, D] = y.shape;
    const [T, k] = rowMap.shape;
    const E = downProjBias ? downProjBias.shape[0] : 0;
    const out = getCudaAddon().combine(readFloat32(b, y), R, D, readInt32(b, rowMap), readFloat32(b, topkWeights),
                                       readInt32(b, topkIds), T, k, E, readOptionalFloat32(b, downProjBias), weightsApplied,
                                       readOptionalFloat32(b, (inputs as {identityInput?: TensorInfo}).identityInput));
    return makeOutput(b, [T, D], 'float32', out);
  };
  return {kernelName: MoeCombine, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
