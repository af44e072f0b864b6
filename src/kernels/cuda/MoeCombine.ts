import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {makeOutput, readF32, readI32, readOptionalF32} from './host_io.js';
import {getCudaAddon} from './loader.js';

export function moeCombineCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {y, rowMap, topkWeights, topkIds, downProjBias} = inputs as unknown as MoeCombineInputs;
    const {weightsApplied} = attrs as unknown as MoeCombineAttrs;
    const b = backend as KernelBackend;
    const [R, D] = y.shape;
    const [T, k] = rowMap.shape;
    const E = downProjBias ? downProjBias.shape[0] : 0;
    const out = getCudaAddon().combine(readF32(b, y), R, D, readI32(b, rowMap), readF32(b, topkWeights),
                                       readI32(b, topkIds), T, k, E, readOptionalF32(b, downProjBias), weightsApplied);
    return makeOutput(b, [T, D], 'float32', out);
  };
  return {kernelName: MoeCombine, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
