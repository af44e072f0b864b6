import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import type {ExpertWeightLayout} from '../expert_weight_formats.js';
import {
  BatchedGemmQuantized, BatchedGemmQuantizedAttrs, BatchedGemmQuantizedInputs, BatchedGemmSwigluQuantized,
  BatchedGemmSwigluQuantizedInputs,
  DequantizeExpertWeights, DequantizeExpertWeightsAttrs, DequantizeExpertWeightsInputs, ExpertWeightInputs,
} from '../kernel_names_quantized.js';
import {SegmentOffsetsProgram} from './moe_permute_webgpu.js';
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
    if (t.shape.reduce((a, b) => a * b, 1) * 4 > backend.device.limits.maxStorageBufferBindingSize) {
      // TODO(phase B): expert ranges as in oversized_rhs.ts.
      throw new Error(`batchedGemm: packed expert weights of shape [${t.shape.join(',')}] exceed one WebGPU storage ` +
          `binding (${backend.device.limits.maxStorageBufferBindingSize} bytes)`);
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
  // tokensPerExpert segments are packed from row 0: their prefix sums are the offsets.
  const offsets = attrs.segmentsAreOffsets ? inputs.segments :
      backend.runWebGPUProgram(new SegmentOffsetsProgram(layout.numExperts), [inputs.segments], 'int32',
                               [{type: 'int32', data: [1]}]);
  try {
    const scale = swiglu ? inputs.scale : undefined;
    const program = new BatchedGemmQuantizedProgram(layout, numRows, inputs.bias != null, swiglu, scale != null);
    const bound = [inputs.lhs, ...weightInputs(inputs), offsets, ...(inputs.bias != null ? [inputs.bias] : []),
                   ...(scale != null ? [scale] : [])];
    return runWithPlaceholders(backend, b => backend.runWebGPUProgram(program, b, 'float32', layoutUniforms(layout)),
                               bound);
  } finally {
    if (!attrs.segmentsAreOffsets) disposeIntermediate(backend, offsets);
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
