import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';
import {moeCombineImpl} from './moe_combine_impl.js';

export const moeCombine: KernelFunc = ({inputs, backend, attrs}) => {
  const {y, rowMap, topkWeights, topkIds, downProjBias, identityInput} = inputs as unknown as MoeCombineInputs;
  const {weightsApplied} = attrs as unknown as MoeCombineAttrs;
  const [numRows, hidden] = y.shape;
  const [numTokens, topK] = rowMap.shape;
  const out = moeCombineImpl(
      readFloat32(backend, y), numRows, hidden, readInt32(backend, rowMap), readFloat32(backend, topkWeights),
      readInt32(backend, topkIds), numTokens, topK, downProjBias == null ? null : readFloat32(backend, downProjBias),
      downProjBias == null ? 0 : downProjBias.shape[0], weightsApplied,
      identityInput == null ? null : readFloat32(backend, identityInput));
  return makeOutput(backend, [numTokens, hidden], 'float32', out);
};

export const moeCombineConfig: KernelConfig = {kernelName: MoeCombine, backendName: 'cpu', kernelFunc: moeCombine};
