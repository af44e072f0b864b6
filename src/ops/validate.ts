/** Argument checks shared by the ops: each error names the op, the argument, what was expected and what came. */
import * as tf from '@tensorflow/tfjs-core';
import type {DataType, Tensor} from '@tensorflow/tfjs-core';

import {PLAIN_SWIGLU, SWIGLU_ACTIVATIONS, SwigluActivation, SwigluActivationAttrs} from '../kernels/kernel_names.js';
import {describeValue, MAX_INT32} from './limits.js';

function describe(value: unknown): string {
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor of shape [${value.shape.join(',')}]`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a JS array of length ${value.length}`;
  const kind = typeof value;
  // 'number NaN', 'string "x"'; undefined, bigints and objects as describeValue says ('undefined', '2n (a bigint)').
  return kind === 'number' || kind === 'string' || kind === 'boolean' ? `${kind} ${describeValue(value)}` :
                                                                       describeValue(value);
}

export function argError(op: string, arg: string, expected: string, got: string): Error {
  return new Error(`${op}: argument '${arg}' must be ${expected}, got ${got}`);
}

/** A tensor of the given rank and dtype; `dims` names the axes for the message (e.g. '[T,E]'). */
export function checkTensor(op: string, arg: string, value: unknown, rank: number, dtype: DataType, dims: string): Tensor {
  const expected = `a ${dtype} tensor of rank ${rank} ${dims}`;
  if (!(value instanceof tf.Tensor)) throw argError(op, arg, expected, describe(value));
  if (value.isDisposed) throw argError(op, arg, expected, 'a disposed tensor');
  if (value.rank !== rank) throw argError(op, arg, expected, `rank ${value.rank} (shape [${value.shape.join(',')}])`);
  if (value.dtype !== dtype) throw argError(op, arg, expected, `dtype ${value.dtype}`);
  if (value.shape.some((d: number) => d > MAX_INT32)) {
    throw argError(op, arg, `${expected} with every dimension <= ${MAX_INT32} (int32 indexing)`,
        `shape [${value.shape.join(',')}]`);
  }
  return value;
}

/** Optional tensor: null/undefined pass through as null. */
export function checkOptionalTensor(
    op: string, arg: string, value: unknown, rank: number, dtype: DataType, dims: string): Tensor | null {
  return value == null ? null : checkTensor(op, arg, value, rank, dtype, dims);
}

export function checkShape(op: string, arg: string, t: Tensor, expected: number[], dims: string): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw argError(op, arg, `of shape ${dims} = [${expected.join(',')}]`, `shape [${t.shape.join(',')}]`);
  }
}

export function checkInt(op: string, arg: string, value: unknown, min: number, max = MAX_INT32): number {
  const range = `in [${min}, ${max}]`;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw argError(op, arg, `an integer ${range}`, describe(value));
  }
  return value;
}

export function checkFiniteNumber(op: string, arg: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw argError(op, arg, 'a finite number', describe(value));
  return value;
}

/** A renormalisation epsilon: null (the op's own rule, `ownRule`) or a finite number >= 0. */
export function checkRenormalizeEpsilon(op: string, value: unknown, ownRule: number): number {
  if (value === null || value === undefined) return ownRule;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw argError(op, 'renormalizeEpsilon', 'null or a finite number >= 0', describe(value));
  }
  return value;
}

export function checkBoolean(op: string, arg: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw argError(op, arg, 'a boolean', describe(value));
  return value;
}

export function checkOptions(op: string, arg: string, value: unknown, allowed: string[]): Record<string, unknown> {
  if (value == null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof tf.Tensor) {
    throw argError(op, arg, `an options object {${allowed.join(', ')}}`, describe(value));
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw argError(op, arg, `an options object with keys {${allowed.join(', ')}}`, `key '${key}'`);
  }
  return value as Record<string, unknown>;
}

/** The activation options of the SwiGLU ops (activation, swigluAlpha, swigluLimit) as kernel attrs. */
export function checkSwigluActivation(op: string, prefix: string, opts: Record<string, unknown>): SwigluActivationAttrs {
  const activation = opts.activation ?? PLAIN_SWIGLU.activation;
  if (!SWIGLU_ACTIVATIONS.includes(activation as SwigluActivation)) {
    throw argError(op, `${prefix}activation`, SWIGLU_ACTIVATIONS.map(a => `'${a}'`).join(' or '), describe(activation));
  }
  const swigluAlpha = opts.swigluAlpha == null ? PLAIN_SWIGLU.swigluAlpha :
      checkFiniteNumber(op, `${prefix}swigluAlpha`, opts.swigluAlpha);
  const limit = opts.swigluLimit ?? PLAIN_SWIGLU.swigluLimit;
  if (typeof limit !== 'number' || !Number.isFinite(limit) || limit <= 0) {
    throw argError(op, `${prefix}swigluLimit`, 'a finite number > 0', describe(limit));
  }
  return {activation: activation as SwigluActivation, swigluAlpha, swigluLimit: limit};
}
