/**
 * Host-memory access for kernels that run on a backend whose tensors live in JS memory ('cpu', or the
 * 'tensorflow' backend of tfjs-node through its synchronous read): the cpu kernels and the CUDA op kernels
 * (tfjs-node cannot load a custom TF op, so those read the inputs' host data, run the addon, and hand back new
 * host tensors). Only KernelBackend's public interface is used (readSync/write), so the same kernel functions
 * register under any host backend name.
 */
import type {DataType, KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';

/**
 * The tfjs backends our host kernels are registered for at import (src/register_all.ts): 'cpu', and
 * @tensorflow/tfjs-backend-wasm's 'wasm', whose tensors read back synchronously as well (registering needs nothing
 * from that package; it is not a dependency).
 */
export const HOST_KERNEL_BACKENDS: readonly string[] = ['cpu', 'wasm'];

/** KernelFunc receives its backend untyped; every host backend implements KernelBackend. */
type AnyBackend = unknown;

export function readFloat32(backend: AnyBackend, t: TensorInfo): Float32Array {
  const values = (backend as KernelBackend).readSync(t.dataId);
  // The cpu backend hands out its own storage (no copy); anything else is converted once.
  return values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
}

export function readInt32(backend: AnyBackend, t: TensorInfo): Int32Array {
  const values = (backend as KernelBackend).readSync(t.dataId);
  return values instanceof Int32Array ? values : Int32Array.from(values as ArrayLike<number>);
}

export function readOptionalFloat32(backend: AnyBackend, t: TensorInfo | undefined): Float32Array | null {
  return t == null ? null : readFloat32(backend, t);
}

/** Hands `values` to the backend (the cpu backend keeps the array itself: do not reuse it afterwards). */
export function makeOutput(
    backend: AnyBackend, shape: number[], dtype: DataType, values: Float32Array | Int32Array): TensorInfo {
  return {dataId: (backend as KernelBackend).write(values, shape, dtype), shape, dtype};
}
