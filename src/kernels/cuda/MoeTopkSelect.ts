import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectInputs} from '../kernel_names.js';
import {makeOutput, readF32, readOptionalF32} from './host_io.js';
import {getCudaAddon} from './loader.js';

export function moeTopkSelectCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {gatingLogits, bias} = inputs as unknown as MoeTopkSelectInputs;
    const {topK, applyNormWeight} = attrs as unknown as MoeTopkSelectAttrs;
    const b = backend as KernelBackend;
    const [T, E] = gatingLogits.shape;
    const r = getCudaAddon().topkSelect(readF32(b, gatingLogits), T, E, readOptionalF32(b, bias), topK, applyNormWeight);
    return [makeOutput(b, [T, topK], 'int32', r.ids), makeOutput(b, [T, topK], 'float32', r.weights)];
  };
  return {kernelName: MoeTopkSelect, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
