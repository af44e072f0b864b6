import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

/** Returns float32 [R,I]: silu(gate) * up * scale[r] (docs/semantics.md section 5). */
export function fusedSwigluScaleComposite(x: Tensor2D, scale: Tensor1D | null): Tensor2D {
  return tf.tidy(() => {
    const [numRows, twiceIntermediate] = x.shape;
    const intermediate = twiceIntermediate / 2;
    const gate = tf.slice(x, [0, 0], [numRows, intermediate]);
    const up = tf.slice(x, [0, intermediate], [numRows, intermediate]);
    const out = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as Tensor2D;
    return scale == null ? out : tf.mul(out, tf.reshape(scale, [numRows, 1])) as Tensor2D;
  });
}
