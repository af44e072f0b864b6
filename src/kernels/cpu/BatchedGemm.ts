import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {makeOutput, readFloat32, readInt32} from '../host_data.js';
import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {wasmBatchedGemm} from '../wasm/batched_gemm_wasm.js';
import {batchedGemmImpl} from './batched_gemm_impl.js';
import {segmentOffsets} from '../host_index_checks.js';

/** The grouped GEMM on host data: float32 [R*N] and N (shared with the fused BatchedGemmSwiglu kernel). */
export function batchedGemmHost(inputs: BatchedGemmInputs, backend: unknown, attrs: BatchedGemmAttrs):
    {out: Float32Array, width: number} {
  const {lhs, rhs, segments, bias} = inputs;
  const {transposeRhs, segmentsAreOffsets} = attrs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const n = transposeRhs ? rhs.shape[1] : rhs.shape[2];
  // Segments first: a bad offset must fail before any work.
  const offsets = segmentOffsets('batchedGemm', readInt32(backend, segments), segmentsAreOffsets, numExperts, numRows);
  const lhsValues = readFloat32(backend, lhs);
  // Read only where needed: the wasm path reads the weights when it packs experts, not on every call.
  const rhsValues = () => readFloat32(backend, rhs);
  const biasValues = bias == null ? null : readFloat32(backend, bias);
  const out =
      wasmBatchedGemm(backend, lhsValues, numRows, k, rhsValues, rhs.dataId, numExperts, n, offsets, transposeRhs,
                      biasValues) ??
      batchedGemmImpl(lhsValues, numRows, k, rhsValues(), numExperts, n, offsets, transposeRhs, biasValues);
  return {out, width: n};
}

export const batchedGemm: KernelFunc = ({inputs, backend, attrs}) => {
  const gemmInputs = inputs as unknown as BatchedGemmInputs;
  const {out, width} = batchedGemmHost(gemmInputs, backend, attrs as unknown as BatchedGemmAttrs);
  return makeOutput(backend, [gemmInputs.lhs.shape[0], width], 'float32', out);
};

export const batchedGemmConfig: KernelConfig = {kernelName: BatchedGemm, backendName: 'cpu', kernelFunc: batchedGemm};
