import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {GetMoeScores, GetMoeScoresAttrs, GetMoeScoresInputs} from '../kernel_names.js';
import {RoutingProgram} from './routing_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

/** Outputs [scores float32 [T,E], topkWeights float32 [T,k], topkIds int32 [T,k]]. */
export function getMoeScoresWebGPU(
    args: {inputs: GetMoeScoresInputs, backend: WebGPUBackendLike, attrs: GetMoeScoresAttrs}): TensorInfo[] {
  const {inputs: {gatingOutput, eScoreCorrectionBias: bias}, backend, attrs} = args;
  const [numTokens, numExperts] = gatingOutput.shape;
  const common = {method: 'noaux_tc' as const, numTokens, numExperts, topK: attrs.topK, renormalize: attrs.renormalize,
                  nGroup: attrs.nGroup, topkGroup: attrs.topkGroup};
  const uniforms = [{type: 'float32' as const, data: [attrs.routedScalingFactor]},
                    {type: 'float32' as const, data: [attrs.renormalizeEpsilon]}];
  const inputs = bias != null ? [gatingOutput, bias] : [gatingOutput];
  // The dense scores do not depend on the bias, and an unused binding is an error under auto layout.
  const scores = backend.runWebGPUProgram(
      new RoutingProgram({...common, emit: 'scores', hasBias: false}), [gatingOutput], 'float32', uniforms);
  const weights = backend.runWebGPUProgram(
      new RoutingProgram({...common, emit: 'weights', hasBias: bias != null}), inputs, 'float32', uniforms);
  const ids = backend.runWebGPUProgram(
      new RoutingProgram({...common, emit: 'ids', hasBias: bias != null}), inputs, 'int32', uniforms);
  return [scores, weights, ids];
}

export const getMoeScoresWebGPUConfig: KernelConfig = {
  kernelName: GetMoeScores,
  backendName: 'webgpu',
  kernelFunc: getMoeScoresWebGPU as unknown as KernelFunc,
};
