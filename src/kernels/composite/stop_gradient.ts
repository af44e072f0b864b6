import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, Tensor} from '@tensorflow/tfjs-core';

/**
 * The same data under a new tensor with no history on the gradient tape (tfjs has no stopGradient op).
 * The composite paths apply it to what is not differentiable: int32 indices and the keys a top-k selection
 * ranks. Without it tfjs's autodiff walks into the selection's comparisons, which have no gradients
 * (LogicalNot, ...), or into a gather's int32 indices, whose gradient it then rejects for not being float32.
 * This is what tf.clone's Identity kernel does (one more reference to the data, no copy), minus the tape record;
 * the result is tracked and disposed like any other tensor of the scope.
 */
export function stopGradient<T extends Tensor>(t: T): T {
  const engine = tf.engine();
  const info = engine.state.tensorInfo.get(t.dataId) as {backend: KernelBackend} | undefined;
  if (info == null) throw new Error('stopGradient: the tensor is disposed');
  info.backend.incRef(t.dataId);
  return engine.makeTensorFromTensorInfo({dataId: t.dataId, shape: t.shape, dtype: t.dtype}, info.backend) as T;
}
