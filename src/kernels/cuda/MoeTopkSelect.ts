import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {cudaUnsupportedError} from '../../executor/layer_schema.js';
import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readOptionalFloat32} from '../host_data.js';
import {getCudaAddon} from './loader.js';

/** The routing methods of the MoeTopkSelect kernel that routing.cu runs (absent: 'greedy'). */
const CUDA_TOPK_SELECT_METHODS: readonly string[] = ['greedy', 'sparsemixer'];

export function moeTopkSelectCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {gatingLogits, bias} = inputs as unknown as MoeTopkSelectInputs;
    const a = attrs as unknown as MoeTopkSelectAttrs;
    const method = a.topkMethod ?? 'greedy';
    const unsupported = cudaUnsupportedError('moeTopkSelect',
        CUDA_TOPK_SELECT_METHODS.includes(method) ? [] : [`topkMethod '${method}'`]);
    if (unsupported != null) throw unsupported;
    const b = backend as KernelBackend;
    const [T, E] = gatingLogits.shape;
    const r = getCudaAddon().topkSelect(
        readFloat32(b, gatingLogits), T, E, readOptionalFloat32(b, bias), a.topK, a.renormalize, a.nGroup ?? 1,
        a.topkGroup ?? 1, a.routedScalingFactor ?? 1, a.renormalizeEpsilon ?? 0, method === 'sparsemixer',
        a.sparsemixerEpsilon ?? 0);
    return [makeOutput(b, [T, a.topK], 'int32', r.ids), makeOutput(b, [T, a.topK], 'float32', r.weights)];
  };
  return {kernelName: MoeTopkSelect, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
