import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {GetMoeScores, GetMoeScoresAttrs, GetMoeScoresInputs} from '../kernel_names.js';
import {getMoeScoresImpl} from './get_moe_scores_impl.js';
import {makeOutput, readFloat32} from '../host_data.js';

export const getMoeScores: KernelFunc = ({inputs, backend, attrs}) => {
  const {gatingOutput, eScoreCorrectionBias} = inputs as unknown as GetMoeScoresInputs;
  const {nGroup, topkGroup, topK, routedScalingFactor, renormalize, renormalizeEpsilon} = attrs as unknown as GetMoeScoresAttrs;
  const [numTokens, numExperts] = gatingOutput.shape;
  const {scores, topkWeights, topkIds} = getMoeScoresImpl(
      readFloat32(backend, gatingOutput), numTokens, numExperts,
      eScoreCorrectionBias == null ? null : readFloat32(backend, eScoreCorrectionBias), nGroup, topkGroup, topK,
      routedScalingFactor, renormalize, renormalizeEpsilon);
  return [
    makeOutput(backend, [numTokens, numExperts], 'float32', scores),
    makeOutput(backend, [numTokens, topK], 'float32', topkWeights),
    makeOutput(backend, [numTokens, topK], 'int32', topkIds),
  ];
};

export const getMoeScoresConfig: KernelConfig = {kernelName: GetMoeScores, backendName: 'cpu', kernelFunc: getMoeScores};
