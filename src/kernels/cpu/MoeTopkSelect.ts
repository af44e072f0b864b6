import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectInputs} from '../kernel_names.js';
import {makeOutput, readFloat32} from '../host_data.js';
import {moeTopkSelectImpl} from './moe_topk_select_impl.js';

export const moeTopkSelect: KernelFunc = ({inputs, backend, attrs}) => {
  const {gatingLogits, bias} = inputs as unknown as MoeTopkSelectInputs;
  const {topK, renormalize, renormalizeEpsilon, routedScalingFactor, nGroup, topkGroup, topkMethod, sparsemixerEpsilon} =
      attrs as unknown as MoeTopkSelectAttrs;
  const [numTokens, numExperts] = gatingLogits.shape;
  const {topkIds, topkWeights} = moeTopkSelectImpl(
      readFloat32(backend, gatingLogits), numTokens, numExperts, bias == null ? null : readFloat32(backend, bias), topK,
      renormalize, renormalizeEpsilon, routedScalingFactor, nGroup, topkGroup, topkMethod, sparsemixerEpsilon);
  return [
    makeOutput(backend, [numTokens, topK], 'int32', topkIds),
    makeOutput(backend, [numTokens, topK], 'float32', topkWeights),
  ];
};

export const moeTopkSelectConfig: KernelConfig = {kernelName: MoeTopkSelect, backendName: 'cpu', kernelFunc: moeTopkSelect};
