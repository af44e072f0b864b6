import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import type {ExpertWeightLayout} from '../expert_weight_formats.js';
import {
  BatchedGemmQuantized, BatchedGemmQuantizedAttrs, BatchedGemmQuantizedInputs, BatchedGemmSwigluQuantized,
  BatchedGemmSwigluQuantizedInputs,
  DequantizeExpertWeights, DequantizeExpertWeightsAttrs, DequantizeExpertWeightsInputs, ExpertWeightInputs,
} from '../kernel_names_quantized.js';
import {gemmByWeightRanges, maxStorageBindingBytes, weightsNeedRanges} from './expert_ranges.js';
import {segmentBounds} from './segment_bounds_webgpu.js';
import {BatchedGemmQuantizedProgram, DequantizeExpertWeightsProgram, layoutUniforms} from './quantized_webgpu.js';
import {disposeIntermediate, WebGPUBackendLike} from './webgpu_util.js';

function layoutOf(attrs: DequantizeExpertWeightsAttrs): ExpertWeightLayout {
  const {format, numExperts, depth, width, transposed, groupSize, zeroPoint} = attrs;
  return {format, numExperts, depth, width, transposed, groupSize, zeroPoint};
}

/**
 * Binds `inputs` in order; an empty tensor (K = 0, E = 0) becomes a one-element placeholder, since binding an
 * empty buffer is a WebGPU validation error and the shader never reads those elements anyway.
 */
function runWithPlaceholders(backend: WebGPUBackendLike, run: (bound: TensorInfo[]) => TensorInfo,
                             inputs: TensorInfo[]): TensorInfo {
  const placeholders: TensorInfo[] = [];
  const bound = inputs.map(t => {
    if (t.shape.some(d => d === 0)) {
      const p = backend.makeTensorInfo([1], t.dtype, t.dtype === 'int32' ? new Int32Array(1) : new Float32Array(1));
      placeholders.push(p);
      return p;
    }
    return t;
  });
  try {
    return run(bound);
  } finally {
    disposeIntermediate(backend, ...placeholders);
  }
}

function weightInputs(inputs: ExpertWeightInputs): TensorInfo[] {
  return [inputs.values, inputs.scales, inputs.zeroPoints].filter((t): t is TensorInfo => t != null);
}

export function dequantizeExpertWeightsWebGPU(args: {
  inputs: DequantizeExpertWeightsInputs, backend: WebGPUBackendLike, attrs: DequantizeExpertWeightsAttrs,
}): TensorInfo {
  const {inputs, backend} = args;
  const layout = layoutOf(args.attrs);
  const program = new DequantizeExpertWeightsProgram(layout);
  if (layout.numExperts * layout.depth * layout.width === 0) {
    return backend.makeTensorInfo(program.outputShape, 'float32', new Float32Array(0));
  }
  const limit = maxStorageBindingBytes();
  if ([program.outputShape, ...weightInputs(inputs).map(t => t.shape)].some(s => s.reduce((a, b) => a * b, 1) * 4 > limit)) {
    // Binding past the limit gives zeros with only a console warning: refuse instead.
    throw new Error(`dequantizeExpertWeights on webgpu: weights [${program.outputShape}] (or their packed tensors) ` +
        `exceed one storage binding (${limit} bytes); dequantize expert ` +
        'ranges (tf.slice each packed tensor along E) or use batchedGemm, which splits them itself');
  }
  return runWithPlaceholders(backend, bound => backend.runWebGPUProgram(
      program, bound, 'float32', layoutUniforms(layout)), weightInputs(inputs));
}

function gemm(args: {inputs: BatchedGemmSwigluQuantizedInputs, backend: WebGPUBackendLike,
                      attrs: BatchedGemmQuantizedAttrs}, swiglu: boolean): TensorInfo {
  const {inputs, backend, attrs} = args;
  const layout = layoutOf(attrs);
  const numRows = inputs.lhs.shape[0];
  const outWidth = swiglu ? layout.width / 2 : layout.width;
  if (numRows * outWidth === 0) return backend.makeTensorInfo([numRows, outWidth], 'float32', new Float32Array(0));
  // The program reads monotone bounds in [0, R] (section 4's rule for invalid segments), never the caller's.
  const offsets = segmentBounds(backend, inputs.segments, attrs.segmentsAreOffsets, layout.numExperts, numRows);
  try {
    const scale = swiglu ? inputs.scale : undefined;
    const run = (l: ExpertWeightLayout, weights: TensorInfo[], o: TensorInfo, bias: TensorInfo | null) => {
      const program = new BatchedGemmQuantizedProgram(l, numRows, bias != null, swiglu, scale != null);
      const bound = [inputs.lhs, ...weights, o, ...(bias != null ? [bias] : []), ...(scale != null ? [scale] : [])];
      return runWithPlaceholders(backend, b => backend.runWebGPUProgram(program, b, 'float32', layoutUniforms(l)), bound);
    };
    const weights = weightInputs(inputs);
    if (layout.numExperts === 0 || !weightsNeedRanges(backend, weights)) {
      return run(layout, weights, offsets, inputs.bias ?? null);
    }
    // Packed tensors past one storage binding (e.g. Qwen3-30B-A3B's int4 up_gate codes, 201 MB > 128 MiB): expert
    // ranges of codes, scales and zero points together, as for a float rhs (expert_ranges.ts).
    return gemmByWeightRanges(backend, weights, offsets, inputs.bias ?? null, (parts, o, bias) =>
        run({...layout, numExperts: parts[0].shape[0]}, parts, o, bias));
  } finally {
    if (offsets !== inputs.segments) disposeIntermediate(backend, offsets);
  }
}

export function batchedGemmQuantizedWebGPU(args: {
  inputs: BatchedGemmQuantizedInputs, backend: WebGPUBackendLike, attrs: BatchedGemmQuantizedAttrs,
}): TensorInfo {
  return gemm(args, false);
}

export function batchedGemmSwigluQuantizedWebGPU(args: {
  inputs: BatchedGemmSwigluQuantizedInputs, backend: WebGPUBackendLike, attrs: BatchedGemmQuantizedAttrs,
}): TensorInfo {
  return gemm(args, true);
}

export const dequantizeExpertWeightsWebGPUConfig: KernelConfig = {
  kernelName: DequantizeExpertWeights,
  backendName: 'webgpu',
  kernelFunc: dequantizeExpertWeightsWebGPU as unknown as KernelFunc,
};

export const batchedGemmQuantizedWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemmQuantized,
  backendName: 'webgpu',
  kernelFunc: batchedGemmQuantizedWebGPU as unknown as KernelFunc,
};

export const batchedGemmSwigluQuantizedWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemmSwigluQuantized,
  backendName: 'webgpu',
  kernelFunc: batchedGemmSwigluQuantizedWebGPU as unknown as KernelFunc,
};

/** The webgpu kernels over packed expert weights (registered by register_all.ts). */
export const quantizedWebGPUKernelConfigs: readonly KernelConfig[] =
    [batchedGemmQuantizedWebGPUConfig, batchedGemmSwigluQuantizedWebGPUConfig, dequantizeExpertWeightsWebGPUConfig];
