/**
 * batchedGemm on webgpu when the expert weights (rhs) are larger than one storage binding
 * (maxStorageBufferBindingSize: 128 MiB under WebGPU's default limits, which is what a page gets unless it asks for
 * more). Binding such a buffer is a validation error that tfjs only reports as a console warning, with a zero or
 * stale result, so the kernel must never do it.
 *
 * The experts are taken in ranges that fit (planExpertShards), each range copied out of the rhs buffer with a
 * buffer-to-buffer copy (copies are not bindings: the limit does not apply), and multiplied on its own. A range's
 * product has rows only in its experts' segments (every other row is zero, semantics doc section 4) and every row
 * belongs to one expert, so the range products add up to the full result. The copy is one extra pass over the
 * weights per call: a caller that keeps weights across calls avoids it by sharding them once (expert_shards.ts).
 * lhs and the output must still fit one binding each.
 */
import type {DataId, TensorInfo} from '@tensorflow/tfjs-core';

import {planExpertShards} from './expert_shards.js';
import {FLAT_LAYOUT, flatDispatch, WebGPUProgram, WebGPUBackendLike} from './webgpu_util.js';

/** The parts of tfjs-backend-webgpu 4.22's WebGPUBackend a buffer copy needs (public members, no typings here). */
interface WebGPUBackendInternals extends WebGPUBackendLike {
  tensorMap: {get(dataId: DataId): {values: Float32Array | Int32Array | null, resource?: unknown}};
  uploadToGPU(dataId: DataId): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: {copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number, size: number):
      void};
}

/** Whether t (f32/i32) is too large for one storage binding on this backend. */
export function exceedsBindingLimit(backend: WebGPUBackendLike, shape: number[]): boolean {
  return shape.reduce((a, b) => a * b, 1) * 4 > backend.device.limits.maxStorageBufferBindingSize;
}

/** Entries [start, end) of t's outermost dimension as a new tensor, copied without binding t. */
function copyOuterRange(backend: WebGPUBackendInternals, t: TensorInfo, start: number, end: number): TensorInfo {
  const inner = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const shape = [end - start, ...t.shape.slice(1)];
  const data = backend.tensorMap.get(t.dataId);
  if (data.values != null) {  // not on the GPU yet: slicing on the host is cheaper than uploading it whole
    return backend.makeTensorInfo(shape, t.dtype, data.values.slice(start * inner, end * inner));
  }
  const out = backend.makeTensorInfo(shape, t.dtype);
  backend.uploadToGPU(out.dataId);  // allocates the destination buffer
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.commandEncoder.copyBufferToBuffer(data.resource, start * inner * 4,
                                            backend.tensorMap.get(out.dataId).resource, 0, (end - start) * inner * 4);
  // Submitted now, as tfjs's own copyBuffer does, so that disposing either tensor later cannot race the copy.
  backend.submitQueue();
  return out;
}

/** out = a + b for two [R,N] f32 tensors (range products over disjoint rows). */
class AddProgram implements WebGPUProgram {
  variableNames = ['a', 'b'];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = true;

  constructor(shape: number[]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const vec = n % 4 === 0 ? 4 : 1;
    this.variableComponents = [vec, vec];
    this.outputComponent = vec;
    this.outputShape = shape;
    this.dispatch = flatDispatch(Math.ceil(n / vec / 256));
    this.shaderKey = `moeAddRanges_v${vec}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          result[index] = a[index] + b[index];
        }
      }`;
  }
}

/** The plain kernel on an rhs that fits: (rhs range, offsets range [n+1], bias range | null) -> [R,N]. */
export type RangeGemm = (rhs: TensorInfo, offsets: TensorInfo, bias: TensorInfo | null) => TensorInfo;

/** batchedGemm with rhs [E,*,*] past the binding limit; offsets is the device-side expertOffsets [E+1]. */
export function batchedGemmByExpertRanges(
    backend: WebGPUBackendLike, rhs: TensorInfo, offsets: TensorInfo, bias: TensorInfo | null,
    gemm: RangeGemm): TensorInfo {
  const b = backend as WebGPUBackendInternals;
  const [numExperts, rows, cols] = rhs.shape;
  const limit = backend.device.limits.maxStorageBufferBindingSize;
  if (rows * cols * 4 > limit) {
    throw new Error(`batchedGemm on webgpu: one expert's weights [${rows},${cols}] (${rows * cols * 4} bytes) exceed ` +
        `the device's maxStorageBufferBindingSize (${limit} bytes); create the webgpu device with a larger limit`);
  }
  const ranges = planExpertShards(numExperts, rows * cols * 4, limit);
  let sum: TensorInfo | null = null;
  for (const {start, end} of ranges) {
    const rhsPart = copyOuterRange(b, rhs, start, end);
    const offsetsPart = copyOuterRange(b, offsets, start, end + 1);
    const biasPart = bias == null ? null : copyOuterRange(b, bias, start, end);
    const part = gemm(rhsPart, offsetsPart, biasPart);
    for (const t of [rhsPart, offsetsPart, biasPart]) if (t != null) backend.disposeData(t.dataId);
    if (sum == null) {
      sum = part;
    } else {
      const next = backend.runWebGPUProgram(new AddProgram(part.shape), [sum, part], 'float32');
      backend.disposeData(sum.dataId);
      backend.disposeData(part.dataId);
      sum = next;
    }
  }
  return sum!;
}
