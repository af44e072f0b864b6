import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {GetMoeScores, GetMoeScoresAttrs, GetMoeScoresInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readOptionalFloat32} from '../host_data.js';
import {getCudaAddon} from './loader.js';

export function getMoeScoresCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {gatingOutput, eScoreCorrectionBias} = inputs as unknown as GetMoeScoresInputs;
    const {nGroup, topkGroup, topK, routedScalingFactor, renormalize, renormalizeEpsilon} =
        attrs as unknown as GetMoeScoresAttrs;
    const b = backend as KernelBackend;
    const [T, E] = gatingOutput.shape;
    const r = getCudaAddon().moeScores(readFloat32(b, gatingOutput), T, E, nGroup, topkGroup, topK, routedScalingFactor,
                                       readOptionalFloat32(b, eScoreCorrectionBias), renormalize, renormalizeEpsilon);
    return [
      makeOutput(b, [T, E], 'float32', r.scores), makeOutput(b, [T, topK], 'float32', r.weights),
      makeOutput(b, [T, topK], 'int32', r.ids),
    ];
  };
  return {kernelName: GetMoeScores, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
