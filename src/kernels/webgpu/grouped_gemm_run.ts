/**
 * How the webgpu kernels run a grouped GEMM (BatchedGemm, and BatchedGemmSwiglu with the SwiGLU x scale epilogue):
 * the one place that decides, per call and from static shapes only, among the empty-shape shortcuts, the
 * segments -> bounds (segment_bounds_webgpu.ts), expert ranges for weights past the binding limit (expert_ranges.ts), the
 * program variant (batched_gemm_config.ts), and whether the epilogue can be fused (else the plain GEMM program
 * and the SwiGLU program one after the other). As tfjs-backend-webgpu's BatchMatMul_impl.ts does for matMul.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {TensorInfo} from '@tensorflow/tfjs-core';

import type {ExpertWeightLayout} from '../expert_weight_formats.js';
import {BatchedGemmAttrs, PLAIN_SWIGLU, SwigluActivationAttrs} from '../kernel_names.js';
import {chooseGemmConfig, GemmShape} from './batched_gemm_config.js';
import {BatchedGemmProgram} from './batched_gemm_webgpu.js';
import {gemmByWeightRanges, weightsNeedRanges} from './expert_ranges.js';
import {FusedSwigluScaleProgram, swigluUniformData} from './fused_swiglu_scale_webgpu.js';
import {DeviceLike, halfMatrixShape, hoistEnableDirectives} from './half_matrices.js';
import {segmentBounds} from './segment_bounds_webgpu.js';
import {runSplitKGemm, splitKApplies, splitKTarget} from './split_k_gemm_webgpu.js';
import {disposeIntermediate, WebGPUBackendLike} from './webgpu_util.js';

export interface GroupedGemmInputs {
  lhs: TensorInfo;
  rhs: TensorInfo;
  segments: TensorInfo;
  bias?: TensorInfo;
  /** Only with swiglu. */
  scale?: TensorInfo;
  /** Packed expert weights (docs/formats.md): rhs is their values, these their tensors in decoder order. */
  packed?: {layout: ExpertWeightLayout, weights: TensorInfo[]};
}

/** The SwiGLU x scale program on h [R,2I] (its own kernel's program). */
export function runSwigluScale(backend: WebGPUBackendLike, x: TensorInfo, scale: TensorInfo | undefined,
                               act: SwigluActivationAttrs = PLAIN_SWIGLU): TensorInfo {
  const [numRows, width] = x.shape;
  const half = width / 2;
  if (numRows * half === 0) return backend.makeTensorInfo([numRows, half], 'float32', new Float32Array(0));
  const program = new FusedSwigluScaleProgram(numRows, half, scale != null, act.activation);
  return backend.runWebGPUProgram(program, scale != null ? [x, scale] : [x], 'float32',
                                  [{type: 'int32', data: [half / program.outputComponent]}, ...swigluUniformData(act)]);
}

/** out [R,N] (or [R,N/2] with swiglu) for inputs the op checked. */
export function runGroupedGemm(backend: WebGPUBackendLike, inputs: GroupedGemmInputs, attrs: BatchedGemmAttrs,
                               swiglu: boolean, act: SwigluActivationAttrs = PLAIN_SWIGLU): TensorInfo {
  const {lhs, rhs, segments, bias, packed} = inputs;
  const {transposeRhs, segmentsAreOffsets} = attrs;
  const [numRows, depth] = lhs.shape;
  const [numExperts, rhsRows, rhsCols] = rhs.shape;
  const width = packed != null ? packed.layout.width : transposeRhs ? rhsRows : rhsCols;
  const outWidth = swiglu ? width / 2 : width;
  if (numRows * outWidth === 0) return backend.makeTensorInfo([numRows, outWidth], 'float32', new Float32Array(0));
  if (depth === 0 || numExperts === 0) {
    // An empty sum: every row is its segment's bias or zero (and both activations map (0, 0) to 0). Rare enough for
    // the host.
    if (bias == null || numExperts === 0) {
      return backend.makeTensorInfo([numRows, outWidth], 'float32', new Float32Array(numRows * outWidth));
    }
    // With a bias: the same program on a zero product of depth 1, since binding the empty lhs/rhs buffers is a
    // WebGPU validation error (the command buffer is dropped and the output keeps stale data).
    const zeroLhs = backend.makeTensorInfo([numRows, 1], 'float32', new Float32Array(numRows));
    const zeroRhs = backend.makeTensorInfo(transposeRhs ? [numExperts, width, 1] : [numExperts, 1, width], 'float32',
                                           new Float32Array(numExperts * width));
    try {
      return runGroupedGemm(backend, {...inputs, lhs: zeroLhs, rhs: zeroRhs, packed: undefined}, attrs, swiglu, act);
    } finally {
      disposeIntermediate(backend, zeroLhs, zeroRhs);
    }
  }
  // One expert, few columns, deep K (the router): split over K, exact, the bounds computed in its sum program.
  const target = splitKTarget(name => tf.env().get(name));
  if (splitKApplies(target, {numExperts, depth, width, transposeRhs, hasBias: bias != null, swiglu,
                             packed: packed != null})) {
    return runSplitKGemm(backend, lhs, rhs, segments, segmentsAreOffsets, target);
  }
  // Every program below reads monotone bounds in [0, R] (section 4's rule for invalid segments), never the caller's.
  const bounds = segmentBounds(backend, segments, segmentsAreOffsets, numExperts, numRows);
  try {
    return gemmOnBounds(backend, {...inputs, segments: bounds}, transposeRhs, swiglu, act);
  } finally {
    if (bounds !== segments) disposeIntermediate(backend, bounds);
  }
}

/** runGroupedGemm past the empty shortcuts, inputs.segments being valid bounds [E+1]. */
function gemmOnBounds(backend: WebGPUBackendLike, inputs: GroupedGemmInputs, transposeRhs: boolean, swiglu: boolean,
                      act: SwigluActivationAttrs): TensorInfo {
  const {lhs, rhs, segments: offsets, bias, scale, packed} = inputs;
  const [numRows, depth] = lhs.shape;
  const [numExperts, rhsRows, rhsCols] = rhs.shape;
  const width = packed != null ? packed.layout.width : transposeRhs ? rhsRows : rhsCols;
  const weights = packed?.weights ?? [rhs];
  if (weightsNeedRanges(backend, weights)) {
    // Packed tensors past one binding (e.g. Qwen3-30B-A3B's int4 g32 up_gate codes, 201 MB > 128 MiB) split as
    // float ones: expert ranges of codes, scales and zero points together (expert_ranges.ts).
    return gemmByWeightRanges(backend, weights, offsets, bias ?? null, (parts, offsetsPart, biasPart) =>
        gemmOnBounds(backend, {
          lhs, rhs: parts[0], segments: offsetsPart, bias: biasPart ?? undefined, scale,
          packed: packed && {layout: {...packed.layout, numExperts: parts[0].shape[0]}, weights: parts},
        }, transposeRhs, swiglu, act));
  }
  // The SwiGLU epilogue's column remap reads rhs as [K,N]: the transposed layout runs the two programs.
  if (swiglu && transposeRhs) {
    const h = gemmOnBounds(backend, {lhs, rhs, segments: offsets, bias, packed}, transposeRhs, false, act);
    try {
      return runSwigluScale(backend, h, scale, act);
    } finally {
      disposeIntermediate(backend, h);
    }
  }
  const shape: GemmShape = {numRows, depth, width, numExperts, transposeRhs, hasBias: bias != null, swiglu,
                            hasScale: swiglu && scale != null, activation: act.activation, packed: packed?.layout};
  const device = backend.device as WebGPUBackendLike['device'] & DeviceLike;
  const config = chooseGemmConfig(shape, device.limits.maxComputeWorkgroupStorageSize, 'default',
                                  halfMatrixShape(device));
  if (config.kind === 'matrix') hoistEnableDirectives(device as unknown as Parameters<typeof hoistEnableDirectives>[0]);
  const program = new BatchedGemmProgram(shape, config);
  const programInputs = [lhs, ...weights, offsets, ...(bias != null ? [bias] : []),
                         ...(swiglu && scale != null ? [scale] : [])];
  return backend.runWebGPUProgram(program, programInputs, 'float32',
                                  [{type: 'int32', data: [program.colTiles]}, ...(swiglu ? swigluUniformData(act) : [])]);
}
