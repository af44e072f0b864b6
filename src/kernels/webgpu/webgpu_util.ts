/**
 * What our WebGPU kernels need from @tensorflow/tfjs-backend-webgpu, typed structurally so that this package never
 * imports it (registering a kernel for 'webgpu' works without it; deep imports of its dist/* fail in Node), plus
 * WGSL snippets shared by several programs.
 */
import type {DataId, DataType, TensorInfo} from '@tensorflow/tfjs-core';

/** tfjs-backend-webgpu's WebGPUProgram interface (4.22), the fields our programs set. */
export interface WebGPUProgram {
  variableNames: string[];
  variableComponents?: number[];
  outputShape: number[];
  outputComponent?: number;
  shaderKey: string;
  dispatchLayout: {x: number[], y?: number[], z?: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size?: boolean;
  uniforms?: string;
  getUserCode(): string;
}

export interface ProgramUniform {
  type: 'int32' | 'float32' | 'uint32';
  data: number[];
}

/** The parts of WebGPUBackend the kernels call. */
export interface WebGPUBackendLike {
  device: {limits: {maxComputeWorkgroupStorageSize: number, maxStorageBufferBindingSize: number}};
  runWebGPUProgram(
      program: WebGPUProgram, inputs: TensorInfo[], outputDtype: DataType, uniforms?: ProgramUniform[],
      output?: TensorInfo): TensorInfo;
  makeTensorInfo(shape: number[], dtype: DataType, values?: Float32Array | Int32Array): TensorInfo;
  disposeData(dataId: DataId, force?: boolean): boolean;
}

/** One workgroup per item of work, flat: the backend folds counts over 65535 into y/z, see flatWorkgroupIndex. */
export function flatDispatch(workgroups: number): [number, number, number] {
  return [Math.max(1, workgroups), 1, 1];
}

export const FLAT_LAYOUT = {x: [0]};

/**
 * The workgroup's position in a flat dispatch (the backend may have reshaped it into x/y/z). tfjs copies the
 * builtins into private variables, which WGSL's uniformity analysis treats as non-uniform: programs with barriers
 * pass this through workgroupUniformLoad before branching on it.
 */
export const WORKGROUP_INDEX_SNIPPET = `
  fn flatWorkgroupIndex() -> i32 {
    return i32(workgroupId.z * numWorkgroups.x * numWorkgroups.y + workgroupId.y * numWorkgroups.x + workgroupId.x);
  }`;

/**
 * Ranking used by every top-k here (docs/semantics.md 1.3 and 2.4/2.6): larger value first, NaN never ahead of a
 * number, equal values (NaN with NaN too) to the lower index. Index < 0 marks an empty candidate, which always
 * loses. NaN is tested on the bits because WGSL lets compilers assume comparisons see no NaN.
 */
export const RANKING_SNIPPET = `
  fn ranksBefore(va: f32, ia: i32, vb: f32, ib: i32) -> bool {
    if (ib < 0) { return ia >= 0; }
    if (ia < 0) { return false; }
    let na = isnan(va);
    let nb = isnan(vb);
    if (na != nb) { return nb; }
    if (!na && va != vb) { return va > vb; }
    return ia < ib;
  }
  fn isFiniteF32(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
  }`;

/**
 * Workgroup-wide inclusive scan of one i32 per thread (Hillis-Steele over `workgroupSize` threads) under the
 * associative `combine` (a WGSL expression in a, the earlier aggregate, and b, the later one; 0 must be its
 * identity on the scanned values). Defines `fn name(v : i32) -> vec2<i32>`: (exclusive prefix, total).
 */
export function workgroupScanSnippet(name: string, combine: string, workgroupSize: number): string {
  return `
  var<workgroup> scanBuf : array<i32, ${workgroupSize}>;
  fn ${name}(v : i32) -> vec2<i32> {
    let lid = i32(localId.x);
    scanBuf[lid] = v;
    workgroupBarrier();
    for (var st = 1; st < ${workgroupSize}; st = st * 2) {
      var a = 0;
      if (lid >= st) { a = scanBuf[lid - st]; }
      workgroupBarrier();
      let b = scanBuf[lid];
      scanBuf[lid] = ${combine};
      workgroupBarrier();
    }
    var exclusive = 0;
    if (lid > 0) { exclusive = scanBuf[lid - 1]; }
    let total = scanBuf[${workgroupSize - 1}];
    workgroupBarrier();
    return vec2<i32>(exclusive, total);
  }`;
}

/** Disposes intermediate results a kernel made with runWebGPUProgram. */
export function disposeIntermediate(backend: WebGPUBackendLike, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}
