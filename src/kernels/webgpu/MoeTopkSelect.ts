import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectInputs} from '../kernel_names.js';
import {RoutingProgram} from './routing_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

/** Outputs [topkIds int32 [T,k], topkWeights float32 [T,k]]. */
export function moeTopkSelectWebGPU(
    args: {inputs: MoeTopkSelectInputs, backend: WebGPUBackendLike, attrs: MoeTopkSelectAttrs}): TensorInfo[] {
  const {inputs: {gatingLogits, bias}, backend, attrs} = args;
  const {topK, renormalize, nGroup, topkGroup} = attrs;
  const [numTokens, numExperts] = gatingLogits.shape;
  const inputs = bias != null ? [gatingLogits, bias] : [gatingLogits];
  const common = {method: attrs.topkMethod, numTokens, numExperts, topK, hasBias: bias != null,
                  renormalize, nGroup, topkGroup};
  const uniforms = [{type: 'float32' as const, data: [attrs.routedScalingFactor]},
                    {type: 'float32' as const, data: [attrs.renormalizeEpsilon]}];
  if (attrs.topkMethod === 'sparsemixer') uniforms.push({type: 'float32' as const, data: [attrs.sparsemixerEpsilon]});
  const ids = backend.runWebGPUProgram(new RoutingProgram({...common, emit: 'ids'}), inputs, 'int32', uniforms);
  const weights =
      backend.runWebGPUProgram(new RoutingProgram({...common, emit: 'weights'}), inputs, 'float32', uniforms);
  return [ids, weights];
}

export const moeTopkSelectWebGPUConfig: KernelConfig = {
  kernelName: MoeTopkSelect,
  backendName: 'webgpu',
  kernelFunc: moeTopkSelectWebGPU as unknown as KernelFunc,
};
