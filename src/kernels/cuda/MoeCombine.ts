import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32, readOptionalFloat32} from '../host_data.js';
import {checkCombineIndices} from '../host_index_checks.js';
import {getCudaAddon} from './loader.js';

export function moeCombineCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {y, rowMap, topkWeights, topkIds, downProjBias, identityInput} = inputs as unknown as MoeCombineInputs;
    const {weightsApplied} = attrs as unknown as MoeCombineAttrs;
    const b = backend as KernelBackend;
    const [R, D] = y.shape;
    const [T, k] = rowMap.shape;
    const E = downProjBias ? downProjBias.shape[0] : 0;
    // On the host already: checked as the cpu kernel does, in its words (the addon checks again). With
    // identityInput a slot with no row (-1, an identity expert's) adds w * identityInput[t].
    const rows = readInt32(b, rowMap), ids = readInt32(b, topkIds);
    checkCombineIndices(rows, ids, k, R, downProjBias ? E : null, identityInput != null);
    const out = getCudaAddon().combine(readFloat32(b, y), R, D, rows, readFloat32(b, topkWeights), ids, T, k, E,
                                       readOptionalFloat32(b, downProjBias), weightsApplied,
                                       readOptionalFloat32(b, identityInput));
    return makeOutput(b, [T, D], 'float32', out);
  };
  return {kernelName: MoeCombine, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
