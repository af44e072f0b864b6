// The cpu kernels' WebAssembly path beyond what the op conformance suite checks: the shipped module matches its
// source, the packed-weight cache (stale data, disposal, budget, running out), threads, the MOE_WASM flag.
// Correctness of every shape against the float64 reference is the conformance suite's ('cpu wasm' instance).
import * as tf from '@tensorflow/tfjs-core';
import {execFileSync} from 'node:child_process';
import {batchedGemm, clearWasmWeightCache, FusedMoE, wasmStatus, wasmWeightCacheBytes} from 'tfjs-moe';

import {refBatchedGemm} from '../reference/moe_reference.js';
import {expectNoLeak, randn, relError, rng, withFlags} from '../helpers/util.js';

function hasClang(): boolean {
  try {
    execFileSync(process.env.CLANG || 'clang-19', ['--version'], {stdio: 'ignore'});
    execFileSync('wasm-ld-19', ['--version'], {stdio: 'ignore'});
    return true;
  } catch {
    return false;
  }
}

interface Case {
  lhs: tf.Tensor2D;
  rhs: tf.Tensor3D;
  segments: tf.Tensor1D;
  expected: Float64Array;
}

/** A case where experts 1 and 3 of 5 get rows; K and N not multiples of the 8-column panels. */
function makeCase(seed: number, rhsValues?: Float32Array): Case {
  const rand = rng(seed);
  const E = 5, K = 19, N = 13, R = 11;
  const offsets = Int32Array.from([0, 0, 6, 6, 11, 11]);
  const lhsValues = randn(rand, R * K);
  const w = rhsValues ?? randn(rand, E * K * N);
  return {lhs: tf.tensor2d(lhsValues, [R, K]), rhs: tf.tensor3d(w, [E, K, N]), segments: tf.tensor1d(offsets, 'int32'),
    expected: refBatchedGemm(lhsValues, R, K, w, E, N, offsets, false, null)};
}

async function run(c: Case): Promise<Float32Array> {
  const out = batchedGemm(c.lhs, c.rhs, c.segments);
  const data = await out.data() as Float32Array;
  out.dispose();
  return data;
}

describe('wasm kernels', () => {
  it('the shipped module (src/kernels/wasm/moe_kernels_wasm.ts) is what a rebuild of moe_kernels.c gives', () => {
    if (!hasClang()) pending('clang-19 / wasm-ld-19 not installed here (.ci/run installs them, so CI checks this)');
    try {
      execFileSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], {encoding: 'utf8', stdio: 'pipe'});
    } catch (e) {
      fail(`scripts/build-wasm.mjs --check failed: ${(e as {stderr?: string}).stderr ?? e}`);
    }
  });

  it('is active in Node (SIMD detected), with threads', () => {
    const status = wasmStatus();
    expect(status.available).withContext(JSON.stringify(status)).toBeTrue();
    expect(status.variant).toBe('threads');
  });

  it('MOE_WASM = false runs the JavaScript kernels and says so', async () => {
    await withFlags({MOE_WASM: false}, async () => {
      expect(wasmStatus()).toEqual({available: false, reason: 'the flag MOE_WASM is false'});
      const c = makeCase(1);
      const before = wasmWeightCacheBytes();
      expect(relError(await run(c), c.expected)).toBeLessThan(1e-6);
      expect(wasmWeightCacheBytes()).withContext('nothing packed on the JS path').toBe(before);
      tf.dispose([c.lhs, c.rhs, c.segments]);
    });
  });

  it('packs only the experts with rows, frees them when the weight is disposed', async () => {
    await expectNoLeak(async () => {
      clearWasmWeightCache();
      expect(wasmWeightCacheBytes()).toBe(0);
      const c = makeCase(2);
      expect(relError(await run(c), c.expected)).toBeLessThan(1e-5);
      // Two experts of K = 19 rows x 2 panels of 8 columns.
      const packed = 2 * 19 * 16 * 4;
      expect(wasmWeightCacheBytes()).toBe(packed);
      expect(relError(await run(c), c.expected)).withContext('second call, from the cache').toBeLessThan(1e-5);
      expect(wasmWeightCacheBytes()).toBe(packed);
      tf.dispose([c.lhs, c.rhs, c.segments]);
      // The next call sweeps the entries of disposed tensors.
      const other = makeCase(3);
      await run(other);
      expect(wasmWeightCacheBytes()).toBe(packed);
      tf.dispose([other.lhs, other.rhs, other.segments]);
    });
  });

  it("a FusedMoE layer's packed experts are freed by layer.dispose()", async () => {
    clearWasmWeightCache();
    const layer = new FusedMoE({numExperts: 6, topK: 2, moeIntermediateSize: 5, backend: 'cpu'}).buildFor(12);
    const x = tf.randomNormal([7, 12]) as tf.Tensor2D;
    const y = layer.apply(x) as tf.Tensor;
    await y.data();
    expect(wasmWeightCacheBytes()).withContext('router and experts packed').toBeGreaterThan(0);
    tf.dispose([x, y]);
    layer.dispose();
    expect(wasmWeightCacheBytes()).toBe(0);
  });

  it('a variable written with new values is repacked (its data gets a new dataId)', async () => {
    const c = makeCase(4);
    const v = tf.variable(c.rhs);
    const first = await (async () => {
      const out = batchedGemm(c.lhs, v as unknown as tf.Tensor3D, c.segments);
      const d = await out.data();
      out.dispose();
      return d;
    })();
    expect(relError(first, c.expected)).toBeLessThan(1e-5);
    const fresh = makeCase(5);
    v.assign(fresh.rhs);
    const lhsValues = await c.lhs.data();
    const expected = refBatchedGemm(lhsValues, 11, 19, await fresh.rhs.data(), 5, 13,
                                    Int32Array.from([0, 0, 6, 6, 11, 11]), false, null);
    const out = batchedGemm(c.lhs, v as unknown as tf.Tensor3D, c.segments);
    expect(relError(await out.data(), expected)).toBeLessThan(1e-5);
    tf.dispose([out, v, c.lhs, c.rhs, c.segments, fresh.lhs, fresh.rhs, fresh.segments]);
  });

  it('over the cache budget evicts, and below one expert falls back to JavaScript, with the same results', async () => {
    // A case packs two experts of 1216 bytes. 0.003 MiB holds one case's two: the second case evicts the
    // first's. 0.001 MiB does not hold two: the JS kernel runs.
    clearWasmWeightCache();
    const cases = [makeCase(6), makeCase(7)];
    for (const [mb, packed] of [[0.003, 2432], [0.001, 0]]) {
      await withFlags({MOE_WASM_CACHE_MB: mb}, async () => {
        for (const c of cases) {
          expect(relError(await run(c), c.expected)).withContext(`budget ${mb} MiB`).toBeLessThan(1e-5);
          expect(wasmWeightCacheBytes()).withContext(`budget ${mb} MiB`).toBe(packed);
        }
      });
      clearWasmWeightCache();
    }
    for (const c of cases) tf.dispose([c.lhs, c.rhs, c.segments]);
  });

  it('gives bitwise the same output on 1, 2 and 3 threads (each column is computed by one thread)', async () => {
    const rand = rng(7);
    // Large enough that 3 threads pay (batched_gemm_wasm.ts keeps small calls on one thread); N = 160 is 20 panels.
    const E = 3, K = 256, N = 157, R = 200;
    const lhs = tf.tensor2d(randn(rand, R * K), [R, K]);
    const rhs = tf.tensor3d(randn(rand, E * N * K), [E, N, K]);
    const bias = tf.tensor2d(randn(rand, E * N), [E, N]);
    const segments = tf.tensor1d([3, 190, 0], 'int32');
    const outputs: Float32Array[] = [];
    for (const threads of [1, 2, 3]) {
      await withFlags({MOE_WASM_THREADS: threads}, async () => {
        expect(wasmStatus().threads).toBe(threads);
        const out = batchedGemm(lhs, rhs, segments, {transposeRhs: true, bias});
        expect(wasmStatus().lastCallThreads).withContext('threads the call ran on').toBe(threads);
        outputs.push(await out.data() as Float32Array);
        out.dispose();
      });
    }
    const expected = refBatchedGemm(await lhs.data(), R, K, await rhs.data(), E, N, Int32Array.from([0, 3, 193, 193]),
                                    true, await bias.data());
    expect(relError(outputs[0], expected)).toBeLessThan(1e-5);
    expect(outputs[1]).toEqual(outputs[0]);
    expect(outputs[2]).toEqual(outputs[0]);
    tf.dispose([lhs, rhs, bias, segments]);
  });
});
