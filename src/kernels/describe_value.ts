/**
 * How every error message of the package shows a value it got (issue 10, item 15: never "null" for NaN, never a
 * TypeError for a bigint). At the bottom of the module graph so that kernels, ops, layers and io all use it.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A value as a message shows it: NaN, Infinity, undefined, bigint and symbols as themselves, tensors by shape. */
export function describeValue(value: unknown): string {
  if (value instanceof tf.Tensor) {
    return value.isDisposed ? 'a disposed tensor' : `a ${value.dtype} tensor of shape [${value.shape.join(',')}]`;
  }
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  switch (typeof value) {
    case 'string': return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
    case 'number': return String(value);  // NaN, Infinity, -0 stays 0
    case 'bigint': return `${value}n (a bigint)`;
    case 'boolean': return String(value);
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
    default: {
      const tag = Object.getPrototypeOf(value) === null ? 'Object' : Object.prototype.toString.call(value).slice(8, -1);
      return tag === 'Object' ? 'an object' : `an object (${tag})`;
    }
  }
}
