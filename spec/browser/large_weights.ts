/**
 * Weights past WebGPU's default maxStorageBufferBindingSize (128 MiB), on a device that has only the defaults, as a
 * page gets from Chromium when it asks for nothing more (tfjs itself asks for the adapter's maximum, which
 * SwiftShader puts at 1 GiB, so the default-limit device is made here). One expert-weight tensor of ~151 MB: the
 * kernels must not bind it whole. Checked against the float64 reference like every other case, and without any
 * WebGPU validation error (setup_browser.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';

import {randomLayer, referenceOutput} from '../layers/layer_util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {expectNoLeak, expectThrowsNoLeak, randn, readAll, recordError, relError, rng} from '../helpers/util.js';
import {refBatchedGemm} from '../reference/moe_reference.js';

/** The WebGPU spec's default maxStorageBufferBindingSize. */
const DEFAULT_BINDING_LIMIT = 128 * 1024 * 1024;
const SLOW = 600_000;

interface GpuAdapterLike {
  limits: Record<string, number>;
  info?: unknown;
  requestDevice(d: {requiredLimits: Record<string, number>}): Promise<unknown>;
}

/** A 'webgpu' backend factory whose device keeps the default storage-binding and buffer-size limits. */
async function defaultLimitBackend(): Promise<tf.KernelBackend> {
  const gpu = (navigator as unknown as {gpu: {requestAdapter(): Promise<GpuAdapterLike | null>}}).gpu;
  const adapter = await gpu.requestAdapter();
  if (adapter == null) throw new Error('navigator.gpu.requestAdapter() returned null');
  const l = adapter.limits;
  // The limits tfjs's own shaders assume (workgroup shape and storage), but not the binding/buffer sizes.
  const device = await adapter.requestDevice({requiredLimits: {
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
  }});
  return new WebGPUBackend(device as ConstructorParameters<typeof WebGPUBackend>[0],
                           adapter.info as ConstructorParameters<typeof WebGPUBackend>[1]);
}

describe('webgpu with expert weights past the default 128 MiB storage-binding limit', () => {
  let originalFactory: (() => tf.KernelBackend | Promise<tf.KernelBackend>) | null = null;

  beforeAll(async () => {
    await tf.setBackend('cpu');
    originalFactory = tf.findBackendFactory('webgpu');
    if (originalFactory == null) throw new Error('tfjs-backend-webgpu did not register a webgpu backend');
    // Our kernels are registered by backend name; replacing the factory keeps them and swaps only the device.
    tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', defaultLimitBackend);
    if (!await tf.setBackend('webgpu')) throw new Error('the default-limit webgpu backend failed to initialise');
  });

  afterAll(async () => {
    await tf.setBackend('cpu');
    tf.removeBackend('webgpu');
    if (originalFactory != null) tf.registerBackend('webgpu', originalFactory, 3);
  });

  // A binding past the limit is a WebGPU validation error ('Binding size (150994944) ... is larger than the maximum
  // storage buffer binding size (134217728)'): setup_browser.ts fails the spec on any such error.

  it('runs on a device that has the default limit', () => {
    const limits = (tf.backend() as unknown as {device: {limits: Record<string, number>}}).device.limits;
    expect(tf.getBackend()).toBe('webgpu');
    expect(limits.maxStorageBufferBindingSize).toBe(DEFAULT_BINDING_LIMIT);
  });

  for (const transposeRhs of [false, true]) {
    const layout = transposeRhs ? '[4, 4608, 2048] (transposeRhs, tokensPerExpert)' : '[4, 2048, 4608] (expertOffsets)';
    it(`batchedGemm with a 151 MB f32 rhs ${layout} matches the reference`, async () => {
      const rand = rng(transposeRhs ? 9003 : 9001);
      const E = 4, K = 2048, N = 4608;
      expect(E * K * N * 4).toBeGreaterThan(DEFAULT_BINDING_LIMIT);
      // An empty expert; with offsets, 2 rows in no segment (they must come out zero).
      const counts = [3, 0, 5, 2];
      const offsets = [0];
      for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
      const R = transposeRhs ? 10 : 12;
      const lhs = randn(rand, R * K);
      const rhs = randn(rand, E * K * N, 0.05);
      const bias = randn(rand, E * N, 0.1);
      const got = await expectNoLeak(async () => {
        const lt = tf.tensor2d(lhs, [R, K]);
        const rt = transposeRhs ? tf.tensor3d(rhs, [E, N, K]) : tf.tensor3d(rhs, [E, K, N]);
        const st = tf.tensor1d(transposeRhs ? counts : offsets, 'int32');
        const bt = tf.tensor2d(bias, [E, N]);
        const out = moe.batchedGemm(lt, rt, st, {bias: bt, transposeRhs});
        const [data] = await readAll(out, lt, rt, st, bt);
        return data;
      });
      const want = refBatchedGemm(lhs, R, K, rhs, E, N, offsets, transposeRhs, bias);
      const err = relError(got, want);
      recordError('browser webgpu, 128 MiB limit: batchedGemm', err);
      expect(err).toBeLessThan(1e-4);
      // The last expert's weights lie past the first 128 MiB of the buffer.
      expect(relError(got.slice(offsets[3] * N, offsets[4] * N), want.slice(offsets[3] * N, offsets[4] * N)))
          .withContext('rows of the last expert').toBeLessThan(1e-4);
      expect(got.slice(offsets[4] * N).every(v => v === 0)).withContext('rows in no segment').toBeTrue();
    }, SLOW);
  }

  it('shardedBatchedGemm over expert shards that each fit (151 MB in all) matches the reference', async () => {
    const rand = rng(9004);
    const E = 8, K = 2048, N = 2304, R = 9;
    const bytesPerExpert = K * N * 4;
    const ranges = internal.planExpertShards(E, bytesPerExpert);
    expect(internal.maxStorageBindingBytes()).toBe(DEFAULT_BINDING_LIMIT);
    expect(ranges.length).toBeGreaterThan(1);
    const counts = [2, 1, 0, 1, 2, 0, 1, 2];
    const offsets = [0];
    for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
    const lhs = randn(rand, R * K);
    const rhs = randn(rand, E * K * N, 0.05);
    const got = await expectNoLeak(async () => {
      // Shards made on the host, as a loader would: no tensor ever holds all the experts.
      const shards = ranges.map(r =>
          tf.tensor3d(rhs.subarray(r.start * K * N, r.end * K * N), [r.end - r.start, K, N]));
      const lt = tf.tensor2d(lhs, [R, K]);
      const st = tf.tensor1d(offsets, 'int32');
      const out = internal.shardedBatchedGemm(lt, shards, ranges, st);
      const [data] = await readAll(out, lt, st, ...shards);
      return data;
    });
    const err = relError(got, refBatchedGemm(lhs, R, K, rhs, E, N, offsets, false, null));
    recordError('browser webgpu, 128 MiB limit: shardedBatchedGemm', err);
    expect(err).toBeLessThan(1e-4);
  }, SLOW);

  it('batchedGemm with one expert past the limit fails with a clear error and leaks nothing', () => {
    const K = 8192, N = 4608;  // 151 MB for a single expert: no expert range can fit
    const lt = tf.tensor2d(new Float32Array(2 * K), [2, K]);
    const rt = tf.tensor3d(new Float32Array(K * N), [1, K, N]);  // values stay on the host until a kernel binds them
    const st = tf.tensor1d([2], 'int32');  // tokensPerExpert: the kernel computes offsets on the device first
    try {
      expectThrowsNoLeak(() => moe.batchedGemm(lt, rt, st),
                         /one expert's weights \[8192,4608\].*maxStorageBufferBindingSize/);
    } finally {
      tf.dispose([lt, rt, st]);
    }
  });

  it('FusedMoE with up_gate_proj_weight [8, 1024, 4608] (151 MB) matches the reference', async () => {
    const rand = rng(9002);
    const E = 8, H = 1024, I = 2304, T = 6;
    const before = tf.memory().numTensors;
    const {layer, data} = randomLayer({numExperts: E, topK: 2, moeIntermediateSize: I, backend: 'webgpu'}, H, rand);
    try {
      expect(data.up_gate_proj_weight.byteLength).toBeGreaterThan(DEFAULT_BINDING_LIMIT);
      const x = randn(rand, T * H);
      const expected = referenceOutput(layer.options, data, x, T, H);
      const call = async () => {
        const input = tf.tensor2d(x, [T, H]);
        const out = layer.apply(input) as tf.Tensor;
        const [d] = await readAll(out, input);
        return d;
      };
      // The first call may keep per-layer state (expert-range copies of the weights); later calls add nothing.
      const first = await call();
      const afterFirst = tf.memory().numTensors;
      const second = await call();
      expect(tf.memory().numTensors).withContext('tensors after a second call').toBe(afterFirst);
      for (const got of [first, second]) {
        const err = relError(got, expected);
        recordError('browser webgpu, 128 MiB limit: FusedMoE', err);
        expect(err).toBeLessThan(LAYER_TOLERANCE);
      }
    } finally {
      layer.dispose();
    }
    expect(tf.memory().numTensors).withContext('tensors after layer.dispose()').toBe(before);
  }, SLOW);
});
