/**
 * Host-side tensor access for the CUDA kernels registered on host-memory backends ('tensorflow', or cpu under
 * that name in tests): tfjs-node cannot load a custom TF op, so these kernels read the inputs' host data, run
 * the addon, and hand back new host tensors.
 */
import type {DataType, KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';

export function readF32(backend: KernelBackend, t: TensorInfo): Float32Array {
  const v = backend.readSync(t.dataId);
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

export function readI32(backend: KernelBackend, t: TensorInfo): Int32Array {
  const v = backend.readSync(t.dataId);
  return v instanceof Int32Array ? v : Int32Array.from(v as ArrayLike<number>);
}

export function readOptionalF32(backend: KernelBackend, t: TensorInfo | undefined): Float32Array | null {
  return t == null ? null : readF32(backend, t);
}

export function makeOutput(
    backend: KernelBackend, shape: number[], dtype: DataType, values: Float32Array | Int32Array): TensorInfo {
  // write() is on every KernelBackend (makeTensorInfo is not part of the interface).
  return {dataId: backend.write(values, shape, dtype), shape, dtype};
}
