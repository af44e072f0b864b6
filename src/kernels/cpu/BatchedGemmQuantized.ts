import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {
  BatchedGemmQuantized, BatchedGemmQuantizedAttrs, BatchedGemmSwigluQuantized, BatchedGemmSwigluQuantizedInputs,
} from '../kernel_names_quantized.js';
import {dequantizeExpertWeightsConfig} from './DequantizeExpertWeights.js';
import {segmentOffsets} from '../host_index_checks.js';
import {batchedGemmQuantizedImpl} from './batched_gemm_quantized_impl.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';
import {expertWeightLayout, readExpertWeights} from './host_expert_weights.js';
import {wasmBatchedGemmQuantized, wasmBatchedGemmSwigluQuantized} from '../wasm/batched_gemm_wasm.js';

/** [R,N] product of the packed weights; with `swiglu` its SwiGLU x row scale [R,N/2] (gate columns first). */
function gemm(args: Parameters<KernelFunc>[0], swiglu: boolean) {
  const {backend} = args;
  const ins = args.inputs as unknown as BatchedGemmSwigluQuantizedInputs;
  const at = args.attrs as unknown as BatchedGemmQuantizedAttrs;
  const numRows = ins.lhs.shape[0];
  // Segments first: a bad offset must fail before any work.
  const offsets = segmentOffsets(swiglu ? 'batchedGemmSwiglu' : 'batchedGemm', readInt32(backend, ins.segments),
                                 at.segmentsAreOffsets, at.numExperts, numRows);
  const layout = expertWeightLayout(at);
  // Read only where needed: the wasm path reads the codes when it packs experts, not on every call.
  const data = () => readExpertWeights(backend, ins, at).data;
  const lhs = readFloat32(backend, ins.lhs), bias = ins.bias == null ? null : readFloat32(backend, ins.bias);
  const scale = ins.scale == null ? null : readFloat32(backend, ins.scale);
  // WebAssembly where the format has kernels there (SwiGLU x scale in their epilogue), else the host algorithm.
  if (!swiglu) {
    const product = wasmBatchedGemmQuantized(backend, lhs, numRows, layout, data, ins.values.dataId, offsets, bias) ??
        batchedGemmQuantizedImpl(lhs, numRows, layout, data(), offsets, bias);
    return makeOutput(backend, [numRows, at.width], 'float32', product);
  }
  const out = wasmBatchedGemmSwigluQuantized(backend, lhs, numRows, layout, data, ins.values.dataId, offsets, bias,
                                             scale) ??
      fusedSwigluScaleImpl(batchedGemmQuantizedImpl(lhs, numRows, layout, data(), offsets, bias), numRows,
                           at.width / 2, scale);
  return makeOutput(backend, [numRows, at.width / 2], 'float32', out);
}

export const batchedGemmQuantized: KernelFunc = args => gemm(args, false);
export const batchedGemmSwigluQuantized: KernelFunc = args => gemm(args, true);

export const batchedGemmSwigluQuantizedConfig: KernelConfig =
    {kernelName: BatchedGemmSwigluQuantized, backendName: 'cpu', kernelFunc: batchedGemmSwigluQuantized};

export const batchedGemmQuantizedConfig: KernelConfig =
    {kernelName: BatchedGemmQuantized, backendName: 'cpu', kernelFunc: batchedGemmQuantized};

/** The host kernels over packed expert weights (part of register_all.ts's hostKernelConfigs). */
export const quantizedHostKernelConfigs: readonly KernelConfig[] =
    [batchedGemmQuantizedConfig, batchedGemmSwigluQuantizedConfig, dequantizeExpertWeightsConfig];
