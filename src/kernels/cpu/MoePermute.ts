import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoePermute, MoePermuteAttrs, MoePermuteInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';
import {moePermuteImpl} from './moe_permute_impl.js';

export const moePermute: KernelFunc = ({inputs, backend, attrs}) => {
  const {x, topkIds, weights} = inputs as unknown as MoePermuteInputs;
  const {numExperts, alignment, zeroExperts} = attrs as unknown as MoePermuteAttrs;
  const [numTokens, hidden] = x.shape;
  const topK = topkIds.shape[1];
  const {permutedX, numRows, tokensPerExpert, expertOffsets, rowMap} = moePermuteImpl(
      readFloat32(backend, x), numTokens, hidden, readInt32(backend, topkIds), topK, numExperts, alignment,
      weights == null ? null : readFloat32(backend, weights), zeroExperts);
  return [
    makeOutput(backend, [numRows, hidden], x.dtype, permutedX),
    makeOutput(backend, [numExperts], 'int32', tokensPerExpert),
    makeOutput(backend, [numExperts + 1], 'int32', expertOffsets),
    makeOutput(backend, [numTokens, topK], 'int32', rowMap),
  ];
};

export const moePermuteConfig: KernelConfig = {kernelName: MoePermute, backendName: 'cpu', kernelFunc: moePermute};
