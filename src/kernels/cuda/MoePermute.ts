import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {MoePermute, MoePermuteAttrs, MoePermuteInputs, permutedRowCount} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32, readOptionalFloat32} from '../host_data.js';
import {checkExpertIds} from '../host_index_checks.js';
import {getCudaAddon} from './loader.js';

export function moePermuteCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {x, topkIds, weights} = inputs as unknown as MoePermuteInputs;
    const {numExperts, alignment, zeroExperts} = attrs as unknown as MoePermuteAttrs;
    const b = backend as KernelBackend;
    const [T, D] = x.shape;
    const k = topkIds.shape[1];
    // On the host already: checked as the cpu kernel does, in its words (the addon checks again). Identity ids
    // [E, E + zeroExperts) are valid: they get no row.
    const ids = readInt32(b, topkIds);
    checkExpertIds(ids, k, numExperts, zeroExperts);
    const r = getCudaAddon().permute(readFloat32(b, x), T, D, ids, k, numExperts, alignment,
                                     readOptionalFloat32(b, weights), zeroExperts);
    const R = permutedRowCount(T, k, numExperts, alignment);
    return [
      makeOutput(b, [R, D], 'float32', r.permutedX), makeOutput(b, [numExperts], 'int32', r.tokensPerExpert),
      makeOutput(b, [numExperts + 1], 'int32', r.expertOffsets), makeOutput(b, [T, k], 'int32', r.rowMap),
    ];
  };
  return {kernelName: MoePermute, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
