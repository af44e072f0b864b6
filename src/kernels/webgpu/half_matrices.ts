/**
 * The tiled grouped GEMM on subgroup matrices (Dawn's chromium-experimental-subgroup-matrix: Vulkan cooperative
 * matrices, the tensor cores on NVIDIA): f16 tiles in workgroup memory, f32 accumulation. Not exact: activations
 * and dequantized weights are rounded to f16 (symmetric int4: the scale too, before its product), about 1e-3
 * relative error per product, 4e-4 to 6e-4 on a layer's output, against 1.4e-2 for ONNX Runtime's int8-activation
 * QMoE. It runs where MOE_WEBGPU_GEMM_HALF_MATRICES is on (the default) and the device has the features, which
 * only a device created with them has (initWebGPUForNode's `features`; tfjs's own device never): detected per
 * device, never assumed; the flag off keeps the exact tiles.
 */
import * as tf from '@tensorflow/tfjs-core';

import {MOE_WEBGPU_GEMM_HALF_MATRICES} from './flags_webgpu.js';

/** The device features the program needs. */
export const HALF_MATRIX_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;
/** Subgroup size the program's layout assumes (each workgroup = 4 subgroups of this many invocations). */
export const HALF_MATRIX_SUBGROUP = 32;

/** One subgroup matrix shape (f16 x f16 -> f32): M x K times K x N. */
export interface HalfMatrixShape {
  m: number;
  n: number;
  k: number;
  /** The device also lists f16 -> f32 at 16 x 8 x 16 (MatrixConfig.n8). */
  n8?: boolean;
}

interface MatrixConfigInfo {
  componentType?: string;
  resultComponentType?: string;
  M?: number;
  N?: number;
  K?: number;
}
export interface DeviceLike {
  features?: {has(name: string): boolean};
  adapterInfo?: {subgroupMinSize?: number, subgroupMaxSize?: number, subgroupMatrixConfigs?: Iterable<MatrixConfigInfo>};
}

type AdapterInfoLike = NonNullable<DeviceLike['adapterInfo']>;
const adapterInfos = new WeakMap<object, AdapterInfoLike>();

/**
 * Records the adapter's info for a device created from it: dawn.node's device.adapterInfo lists no subgroup
 * matrix configurations (seen on the H200), the adapter's info does. initWebGPUForNode calls this.
 */
export function setDeviceAdapterInfo(device: object, info: AdapterInfoLike): void {
  adapterInfos.set(device, {subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize,
    subgroupMatrixConfigs: [...(info.subgroupMatrixConfigs ?? [])].map(c => ({componentType: c.componentType,
      resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K}))});
}

/** The adapter info recorded for a device by setDeviceAdapterInfo (undefined: none recorded). */
export function recordedAdapterInfo(device: object): AdapterInfoLike | undefined {
  return adapterInfos.get(device);
}

/**
 * The matrix shape the half-matrix program uses on this device, or null where it must not run: flag off, a
 * feature missing, subgroups not exactly 32 wide, or no f16 -> f32 configuration with M = N = K (16 preferred).
 */
export function halfMatrixShape(device: DeviceLike): HalfMatrixShape | null {
  if (!tf.env().getBool(MOE_WEBGPU_GEMM_HALF_MATRICES)) return null;
  if (!HALF_MATRIX_FEATURES.every(f => device.features?.has(f) === true)) return null;
  const recorded = adapterInfos.get(device);
  const own = device.adapterInfo;
  const info = [...(own?.subgroupMatrixConfigs ?? [])].length > 0 || recorded == null ? own : recorded;
  if (info?.subgroupMinSize !== HALF_MATRIX_SUBGROUP || info.subgroupMaxSize !== HALF_MATRIX_SUBGROUP) return null;
  const square = [...(info.subgroupMatrixConfigs ?? [])].filter(c => c.componentType === 'f16' &&
      c.resultComponentType === 'f32' && c.M === c.N && c.N === c.K && (c.M === 16 || c.M === 8));
  const best = square.find(c => c.M === 16) ?? square[0];
  const n8 = best?.M === 16 && [...(info.subgroupMatrixConfigs ?? [])].some(c => c.componentType === 'f16' &&
      c.resultComponentType === 'f32' && c.M === 16 && c.N === 8 && c.K === 16);
  return best == null ? null : {m: best.M!, n: best.N!, k: best.K!, ...(n8 ? {n8} : {})};
}

const hoisted = new WeakSet<object>();

/**
 * tfjs prepends its own declarations to a program's code, but WGSL wants directives (`enable`, `diagnostic`) first: wrap the
 * device's createShaderModule once so that they move to the top (other modules pass through unchanged).
 */
export function hoistEnableDirectives(device: {createShaderModule(d: {code: string}): unknown}): void {
  if (hoisted.has(device)) return;
  hoisted.add(device);
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (d: {code: string}) => {
    const directives: string[] = [];
    const code = d.code.replace(/^[ \t]*(enable [a-z0-9_, ]+|diagnostic\([a-z0-9_., ]+\));[ \t]*$/gm, line => {
      directives.push(line.trim());
      return '';
    });
    return create(directives.length === 0 ? d : {...d, code: `${directives.join('\n')}\n${code}`});
  };
}
