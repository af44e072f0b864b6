import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readOptionalFloat32} from '../host_data.js';
import {getCudaAddon} from './loader.js';

export function moeTopkSelectCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {gatingLogits, bias} = inputs as unknown as MoeTopkSelectInputs;
    const {topK, renormalize, renormalizeEpsilon, routedScalingFactor, nGroup, topkMethod} =
        attrs as unknown as MoeTopkSelectAttrs;
    const no = (what: string) => new Error(`moeTopkSelect: ${what} is not supported by the CUDA executor yet`);
    if (topkMethod === 'sparsemixer') throw no('topkMethod \'sparsemixer\'');
    if (nGroup > 1) throw no('nGroup > 1 (group_limited_greedy)');
    if (routedScalingFactor !== 1) throw no('routedScalingFactor');
    if (renormalizeEpsilon !== 0) throw no('renormalizeEpsilon');
    const b = backend as KernelBackend;
    const [T, E] = gatingLogits.shape;
    const r = getCudaAddon().topkSelect(readFloat32(b, gatingLogits), T, E, readOptionalFloat32(b, bias), topK, renormalize);
    return [makeOutput(b, [T, topK], 'int32', r.ids), makeOutput(b, [T, topK], 'float32', r.weights)];
  };
  return {kernelName: MoeTopkSelect, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
