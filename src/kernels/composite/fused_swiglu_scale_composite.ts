import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {PLAIN_SWIGLU, SwigluActivationAttrs} from '../kernel_names.js';

/** Returns float32 [R,I]: act(gate, up) * scale[r] (docs/semantics.md section 5). */
export function fusedSwigluScaleComposite(x: Tensor2D, scale: Tensor1D | null,
                                          act: SwigluActivationAttrs = PLAIN_SWIGLU): Tensor2D {
  return tf.tidy(() => {
    const [numRows, twiceIntermediate] = x.shape;
    const intermediate = twiceIntermediate / 2;
    let gate = tf.slice(x, [0, 0], [numRows, intermediate]);
    let up = tf.slice(x, [0, intermediate], [numRows, intermediate]);
    let out: Tensor2D;
    if (act.activation === 'clamped_swiglu') {
      const limit = act.swigluLimit;
      gate = tf.minimum(gate, limit);
      up = tf.add(tf.clipByValue(up, -limit, limit), 1);
      out = tf.mul(tf.mul(gate, tf.sigmoid(tf.mul(gate, act.swigluAlpha))), up) as Tensor2D;
    } else {
      out = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as Tensor2D;
    }
    return scale == null ? out : tf.mul(out, tf.reshape(scale, [numRows, 1])) as Tensor2D;
  });
}
