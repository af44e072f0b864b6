import type {KernelBackend, KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, BatchedGemmSwigluInputs} from '../kernel_names.js';
import {makeOutput, readFloat32, readInt32, readOptionalFloat32} from '../host_data.js';
import {segmentOffsets} from '../host_index_checks.js';
import {getCudaAddon} from './loader.js';

/** The addon's two op entry points back to back (the layer's whole-forward executor is the fast CUDA path). */
export function batchedGemmSwigluCudaConfig(backendName: string): KernelConfig {
  const kernelFunc = ({inputs, backend, attrs}: Parameters<KernelFunc>[0]) => {
    const {lhs, rhs, segments, bias, scale} = inputs as unknown as BatchedGemmSwigluInputs;
    const {transposeRhs, segmentsAreOffsets, activation, swigluAlpha, swigluLimit} =
        attrs as unknown as BatchedGemmSwigluAttrs;
    const b = backend as KernelBackend;
    const [R, K] = lhs.shape;
    const E = rhs.shape[0];
    const N = transposeRhs ? rhs.shape[1] : rhs.shape[2];
    // On the host already: checked as the cpu kernels do (the addon trusts its offsets).
    const offsets = segmentOffsets('batchedGemmSwiglu', readInt32(b, segments), segmentsAreOffsets, E, R);
    const addon = getCudaAddon();
    const h = addon.batchedGemm(readFloat32(b, lhs), R, K, readFloat32(b, rhs), E, N, offsets,
                                true, transposeRhs, readOptionalFloat32(b, bias));
    const out = addon.swiglu(h, R, N / 2, readOptionalFloat32(b, scale), activation === 'clamped_swiglu', swigluAlpha,
                             swigluLimit);
    return makeOutput(b, [R, N / 2], 'float32', out);
  };
  return {kernelName: BatchedGemmSwiglu, backendName, kernelFunc: kernelFunc as unknown as KernelFunc};
}
