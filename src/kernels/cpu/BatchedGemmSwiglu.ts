import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {makeOutput, readFloat32, readInt32} from '../host_data.js';
import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, BatchedGemmSwigluInputs, PLAIN_SWIGLU} from '../kernel_names.js';
import {wasmBatchedGemmSwiglu} from '../wasm/batched_gemm_wasm.js';
import {batchedGemmHost} from './BatchedGemm.js';
import {segmentOffsets} from '../host_index_checks.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';

/**
 * WebAssembly: SwiGLU x scale in the GEMM's epilogue (the [R,2I] intermediate never exists). JavaScript: the two
 * host algorithms back to back (on the host the intermediate costs no extra dispatch).
 */
export const batchedGemmSwiglu: KernelFunc = ({inputs, backend, attrs}) => {
  const gemmInputs = inputs as unknown as BatchedGemmSwigluInputs;
  const gemmAttrs = attrs as unknown as BatchedGemmSwigluAttrs;
  const {lhs, rhs, segments, bias, scale} = gemmInputs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const width = gemmAttrs.transposeRhs ? rhs.shape[1] : rhs.shape[2];
  const offsets = segmentOffsets('batchedGemmSwiglu', readInt32(backend, segments), gemmAttrs.segmentsAreOffsets,
                                 numExperts, numRows);
  const scaleValues = scale == null ? null : readFloat32(backend, scale);
  // The wasm epilogue computes plain SwiGLU only: the clamped variant runs the JavaScript pair.
  const plain = gemmAttrs.activation == null || gemmAttrs.activation === 'swiglu';
  const fused = !plain ? null : wasmBatchedGemmSwiglu(
      backend, readFloat32(backend, lhs), numRows, k, () => readFloat32(backend, rhs), rhs.dataId, numExperts, width / 2,
      offsets, gemmAttrs.transposeRhs, bias == null ? null : readFloat32(backend, bias), scaleValues);
  if (fused != null) return makeOutput(backend, [numRows, width / 2], 'float32', fused);
  const {out: h} = batchedGemmHost(gemmInputs, backend, gemmAttrs);
  const out = fusedSwigluScaleImpl(h, numRows, width / 2, scaleValues, plain ? PLAIN_SWIGLU : gemmAttrs);
  return makeOutput(backend, [numRows, width / 2], 'float32', out);
};

export const batchedGemmSwigluConfig: KernelConfig =
    {kernelName: BatchedGemmSwiglu, backendName: 'cpu', kernelFunc: batchedGemmSwiglu};
