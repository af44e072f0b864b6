/** What every op's conformance block shares: the backend under test, the path (kernel or composite), tolerances. */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_MOE_KERNELS, hasMoeKernel, wasmReady, wasmStatus, withCompositeKernels} from 'tfjs-moe';

import {randInt, relError, recordError} from '../../helpers/util.js';

export interface OpConformanceOptions {
  /** tfjs backend name the ops run on ('cpu', 'webgpu', 'cuda', ...). */
  backend: string;
  /** true: every op forced onto the composite path (plain tfjs ops); false: our registered kernels. */
  composite: boolean;
  /** 'full': many random cases (cpu, cheap); 'small': a few small cases (slow backends such as SwiftShader). */
  scale: 'full' | 'small';
  /**
   * cpu only: true runs the cpu kernels' WebAssembly SIMD path (and asserts it is active), false their JavaScript
   * fallback (flag MOE_WASM); absent leaves the flag as it is.
   */
  wasm?: boolean;
  /**
   * With wasm true: which SIMD build runs (flag MOE_WASM_RELAXED_SIMD). 'relaxed' asserts the engine runs the
   * relaxed-SIMD build (Chromium; Node 20 with --experimental-wasm-relaxed-simd, which scripts/run-specs.mjs turns
   * on); 'plain' forces the plain build; absent leaves the flag as it is.
   */
  simd?: 'plain' | 'relaxed';
}

/** Tolerances of the developers' guide (float32 storage). */
export const TOL = {routing: 1e-5, permute: 1e-5, combine: 1e-5, swiglu: 1e-5, gemm: 1e-4};

export class ConformanceContext {
  readonly full: boolean;

  constructor(readonly label: string, readonly opts: OpConformanceOptions) {
    this.full = opts.scale === 'full';
  }

  /** Runs an op call on the path under test. */
  call<T>(fn: () => T): T {
    return this.opts.composite ? withCompositeKernels(fn) : fn();
  }

  /** Number of random cases: `full` on the full scale, `small` otherwise. */
  cases(full: number, small: number): number {
    return this.full ? full : small;
  }

  /** Asserts err < tol and records it under `${label} ${op}` for the closing error table. */
  expectClose(op: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): number {
    const err = relError(actual, expected);
    recordError(`${this.label} ${op}`, err);
    expect(err).withContext(`${op} ${what}: relative error vs float64 reference`).toBeLessThan(tol);
    return err;
  }
}

/**
 * Call inside a suite's describe(): runs the suite on opts.backend (restoring the previous backend after it) with
 * jasmine's timeout raised on non-cpu backends, where software GPUs (SwiftShader) on a shared machine take seconds
 * per case and the default 5 s would turn slowness into failures and bogus leak reports from a still-running case.
 * A backend that could not register here (no GPU adapter, no CUDA addon) makes every spec pending with that
 * reason; one that registered but fails to initialise is an error. On the kernel path, a first spec asserts that
 * our kernels are registered, since otherwise the composite path would be tested under the kernel's name.
 */
export function useSuiteBackend(suite: string, opts: OpConformanceOptions): void {
  let previousBackend = '';
  let unavailable: string | null = null;
  let previousTimeout = 0;
  let previousWasm: boolean | null = null;
  let previousSimd: boolean | null = null;
  beforeAll(async () => {
    if (opts.simd != null) {
      previousSimd = tf.env().getBool('MOE_WASM_RELAXED_SIMD');
      tf.env().set('MOE_WASM_RELAXED_SIMD', opts.simd === 'relaxed');
    }
    if (opts.wasm != null) {
      previousWasm = tf.env().getBool('MOE_WASM');
      tf.env().set('MOE_WASM', opts.wasm);
      // Browsers compile the module in the background: wait for it so the suite tests what it names.
      await wasmReady();
    }
    previousBackend = tf.getBackend();
    previousTimeout = jasmine.DEFAULT_TIMEOUT_INTERVAL;
    if (opts.backend !== 'cpu') jasmine.DEFAULT_TIMEOUT_INTERVAL = Math.max(previousTimeout, 120_000);
    if (tf.findBackendFactory(opts.backend) == null) {
      unavailable = `backend '${opts.backend}' is not registered in this environment`;
      return;
    }
    const ok = await tf.setBackend(opts.backend);
    if (!ok) throw new Error(`${suite}: backend '${opts.backend}' failed to initialise`);
    await tf.ready();
  });
  afterAll(async () => {
    if (previousWasm != null) tf.env().set('MOE_WASM', previousWasm);
    if (previousSimd != null) tf.env().set('MOE_WASM_RELAXED_SIMD', previousSimd);
    jasmine.DEFAULT_TIMEOUT_INTERVAL = previousTimeout;
    if (previousBackend !== '' && tf.getBackend() !== previousBackend) await tf.setBackend(previousBackend);
  });
  beforeEach(() => {
    // Runs where its backend exists: webgpu on SwiftShader here and in CI, cuda on the GPU machine (bench/device).
    if (unavailable != null) pending(`${unavailable} (runs where that backend exists: webgpu via dawn.node/SwiftShader, cuda on the GPU machine)`);
  });
  if (opts.wasm === true) {
    it('runs the WebAssembly SIMD kernels (every engine the suite runs on supports SIMD)', () => {
      const status = wasmStatus();
      expect(status.available).withContext(`wasm status: ${JSON.stringify(status)}`).toBeTrue();
      if (opts.simd != null) expect(status.simd).withContext(`wasm status: ${JSON.stringify(status)}`).toBe(opts.simd);
    });
  }
  if (!opts.composite) {
    it(`has a kernel of ours registered for every op on '${opts.backend}'`, () => {
      for (const name of ALL_MOE_KERNELS) {
        expect(hasMoeKernel(name, opts.backend)).withContext(`${name} registered for ${opts.backend}`).toBeTrue();
      }
    });
  }
}

/** Seed of case i of an op, so a failing case's name reproduces it. */
export function caseSeed(op: string, i: number): number {
  let h = 2166136261;
  for (let c = 0; c < op.length; c++) h = Math.imul(h ^ op.charCodeAt(c), 16777619);
  return ((h >>> 0) + i * 7919) >>> 0;
}

/** Uniform float32 values in [lo, hi). */
export function uniformF32(rand: () => number, n: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

/** A token count for a random case: 0 and 1 appear often, otherwise up to maxT. */
export function randTokens(rand: () => number, maxT: number): number {
  const r = rand();
  if (r < 0.04) return 0;
  if (r < 0.25) return 1;
  return randInt(rand, 2, maxT);
}

export function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

/** Integer ids [T*k] in [0,E), distinct within a token when distinct = true (what routing produces). */
export function randomIds(rand: () => number, T: number, k: number, E: number, distinct: boolean): Int32Array {
  const ids = new Int32Array(T * k);
  for (let t = 0; t < T; t++) {
    const used = new Set<number>();
    for (let j = 0; j < k; j++) {
      let e = randInt(rand, 0, E - 1);
      if (distinct) {
        while (used.has(e)) e = (e + 1) % E;
        used.add(e);
      }
      ids[t * k + j] = e;
    }
  }
  return ids;
}

/** Reads tensors with `await data()` (webgpu forbids sync reads) and disposes them. */
export async function readF32(t: tf.Tensor): Promise<Float32Array> {
  const d = await t.data();
  t.dispose();
  return d as Float32Array;
}

export async function readI32(t: tf.Tensor): Promise<Int32Array> {
  expect(t.dtype).withContext('dtype of an id/offset output').toBe('int32');
  const d = await t.data();
  t.dispose();
  return Int32Array.from(d);
}

export function expectShape(t: tf.Tensor, shape: number[], what: string): void {
  expect(t.shape).withContext(`shape of ${what}`).toEqual(shape);
}

/** Compact description of the first mismatch between two int arrays (ids are compared exactly). */
export function expectSameInts(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length).withContext(`length of ${what}`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      fail(`${what}[${i}]: expected ${expected[i]}, got ${actual[i]} ` +
          `(expected [${Array.from(expected).slice(Math.max(0, i - 4), i + 5)}] near it, ` +
          `got [${Array.from(actual).slice(Math.max(0, i - 4), i + 5)}])`);
      return;
    }
  }
}

/**
 * Runs fn with the given input tensors and disposes them afterwards, also when the op throws (so an op's
 * failure is not reported a second time as a leak of the test's own inputs). Also asserts the op left its
 * inputs unchanged (a kernel writing into an input's buffer would corrupt the caller's tensors).
 */
export async function withInputs<T>(inputs: Array<tf.Tensor | null>, fn: () => Promise<T>): Promise<T> {
  try {
    const before = await Promise.all(inputs.map(t => t?.data()));
    const result = await fn();
    for (let i = 0; i < inputs.length; i++) {
      const t = inputs[i];
      if (t == null) continue;
      const after = await t.data();
      const changed = Array.prototype.findIndex.call(before[i]!, (v: number, j: number) => !Object.is(v, after[j]));
      expect(changed).withContext(`input ${i} (shape [${t.shape}]) modified by the op at element ${changed}`).toBe(-1);
    }
    return result;
  } finally {
    for (const t of inputs) t?.dispose();
  }
}
