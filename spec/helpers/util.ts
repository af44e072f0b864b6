/** Test utilities shared by the specs: seeded randomness, error measures, leak checks. */
import * as tf from '@tensorflow/tfjs-core';

/** mulberry32: a small seeded generator so failures reproduce from the printed seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(rand: () => number, lo: number, hi: number): number {  // inclusive
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** Normal-ish values (sum of uniforms), scaled. */
export function randn(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() + rand() + rand() - 1.5) * 2 * scale;
  return out;
}

/**
 * Relative error of `actual` against a float64 `expected`: max |a - e| / max(max |e|, tiny). Normalizing by the
 * largest reference magnitude (not elementwise) keeps near-zero entries of a sum from dominating.
 */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(a) !== Number.isNaN(e)) return Infinity;
    if (Number.isNaN(e)) continue;
    maxDiff = Math.max(maxDiff, Math.abs(a - e));
    maxRef = Math.max(maxRef, Math.abs(e));
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}

/** Worst errors seen, per label, printed at the end of the run (closing notes quote them). */
const worst = new Map<string, number>();
export function recordError(label: string, err: number): void {
  worst.set(label, Math.max(worst.get(label) ?? 0, err));
}
export function worstErrors(): Map<string, number> {
  return worst;
}

/** Asserts the tensor count is unchanged across fn, success or failure (the failure is rethrown). */
export async function expectNoLeak<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  try {
    return await fn();
  } finally {
    expect(tf.memory().numTensors).withContext('tf.memory().numTensors after the call').toBe(before);
  }
}

/** Asserts fn throws an error matching `pattern` and leaks no tensor. */
export function expectThrowsNoLeak(fn: () => unknown, pattern: RegExp): void {
  const before = tf.memory().numTensors;
  expect(fn).toThrowError(pattern);
  expect(tf.memory().numTensors).withContext('tf.memory().numTensors after the failed call').toBe(before);
}

/** Reads every tensor (async, as webgpu requires), disposes them, returns the data. */
export async function readAll(...ts: tf.Tensor[]): Promise<Array<Float32Array | Int32Array>> {
  const out = await Promise.all(ts.map(t => t.data() as Promise<Float32Array | Int32Array>));
  ts.forEach(t => t.dispose());
  return out;
}

/**
 * Runs fn and counts the active backend's GPU->CPU reads (read and readSync) during it: the no-readback contract
 * of the webgpu path is asserted with this.
 */
export function countBackendReads<T>(fn: () => T): {result: T, reads: number} {
  const backend = tf.backend() as unknown as Record<string, (...a: unknown[]) => unknown>;
  const original = {read: backend.read, readSync: backend.readSync};
  let reads = 0;
  backend.read = function(this: unknown, ...a: unknown[]) { reads++; return original.read.apply(this, a); };
  backend.readSync = function(this: unknown, ...a: unknown[]) { reads++; return original.readSync.apply(this, a); };
  try {
    return {result: fn(), reads};
  } finally {
    backend.read = original.read;
    backend.readSync = original.readSync;
  }
}

/** Runs fn with the given tf.env() flags set, restoring them afterwards. */
export async function withFlags<T>(flags: Record<string, number | boolean>, fn: () => Promise<T> | T): Promise<T> {
  const before = Object.fromEntries(Object.keys(flags).map(f => [f, tf.env().get(f)]));
  try {
    for (const [f, v] of Object.entries(flags)) tf.env().set(f, v);
    return await fn();
  } finally {
    for (const [f, v] of Object.entries(before)) tf.env().set(f, v);
  }
}
