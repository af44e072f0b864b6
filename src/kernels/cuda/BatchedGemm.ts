import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32, readOptionalFloat32} from '../host_data.js';
import {segmentOffsets} from '../host_index_checks.js';
import {getCudaAddon} from './loader.js';

/** float32 in, float32 out, exact FMA arithmetic (no TF32): the op's float32 contract. */
export function batchedGemmCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {lhs, rhs, segments, bias} = inputs as unknown as BatchedGemmInputs;
    const {transposeRhs, segmentsAreOffsets} = attrs as unknown as BatchedGemmAttrs;
    const b = backend as KernelBackend;
    const [R, K] = lhs.shape;
    const E = rhs.shape[0];
    const N = transposeRhs ? rhs.shape[1] : rhs.shape[2];
    // On the host already: checked as the cpu kernels do (the addon trusts its offsets).
    const offsets = segmentOffsets('batchedGemm', readInt32(b, segments), segmentsAreOffsets, E, R);
    const out = getCudaAddon().batchedGemm(readFloat32(b, lhs), R, K, readFloat32(b, rhs), E, N, offsets,
                                           true, transposeRhs, readOptionalFloat32(b, bias));
    return makeOutput(b, [R, N], 'float32', out);
  };
  return {kernelName: BatchedGemm, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
