// The whole-layer decode path on webgpu (src/kernels/webgpu/decode): every program shape and layer option it takes
// against the float64 reference through the FusedMoE layer, four programs per forward and none through tfjs, no
// readback, no leaked tensor, plans freed on dispose and rebuilt on a weight change, and the stated fallbacks
// (latent projections, a gradient tape, T above the decode limit) running the op chain instead. Packed expert
// weights: decode_webgpu_packed.spec.ts.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';
import type {FusedMoEArgs} from 'tfjs-moe';

import {countBackendReads, recordError, relError, rng} from '../helpers/util.js';
import {packedLayer} from '../layers/layer_formats_cases.js';
import {randn, randomLayer, referenceOutput} from '../layers/layer_util.js';
import {countTfjsPrograms} from './program_count.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW_MS = 300_000;
const TOLERANCE = 1e-4;

interface Case {
  label: string;
  args: FusedMoEArgs;
  H: number;
  T: number[];
  maxTokens?: number;
}

const CASES: Case[] = [
  {label: 'greedy, renormalized', args: {numExperts: 6, topK: 2, moeIntermediateSize: 8}, H: 16, T: [1, 3]},
  {label: 'greedy, no renormalization, correction bias, expert biases',
   args: {numExperts: 7, topK: 3, moeIntermediateSize: 4, renormalize: false, useCorrectionBias: true, withBias: true},
   H: 12, T: [2]},
  {label: 'probInAdvance with biases', args: {numExperts: 5, topK: 2, moeIntermediateSize: 8, withBias: true,
   probInAdvance: true}, H: 8, T: [5]},
  {label: 'noaux_tc (3 groups, 2 kept, scaling 2.5, correction bias)',
   args: {numExperts: 6, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 3, topkGroup: 2,
          routedScalingFactor: 2.5, useCorrectionBias: true}, H: 8, T: [1, 4]},
  {label: 'noaux_tc without renormalization, one expert per group',
   args: {numExperts: 4, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 3,
          renormalize: false}, H: 8, T: [3]},
  {label: 'gated shared expert, 40 experts (two router column groups)',
   args: {numExperts: 40, topK: 3, moeIntermediateSize: 4, sharedExpertIntermediateSize: 8, sharedExpertGate: true},
   H: 8, T: [2]},
  {label: 'ungated shared expert, wide tiles (T = 16)',
   args: {numExperts: 8, topK: 2, moeIntermediateSize: 8, sharedExpertIntermediateSize: 4, withBias: true}, H: 8,
   T: [16]},
  {label: 'an expert with more than 16 rows (two row passes), T = 24',
   args: {numExperts: 3, topK: 2, moeIntermediateSize: 4}, H: 8, T: [24], maxTokens: 32},
  {label: '300 experts (two experts per thread in the offsets scan)',
   args: {numExperts: 300, topK: 4, moeIntermediateSize: 4}, H: 4, T: [2]},
];

describe('webgpu decode tuning table (decode_tuning.ts)', () => {
  it('covers every T the path allows, for any shape, with valid launch shapes', () => {
    const shapes = [{H: 2048, I: 768, E: 128, K: 8}, {H: 16, I: 8, E: 6, K: 2}, {H: 2048, I: 768, E: 64, K: 8}];
    for (const shape of shapes) {
      for (let T = 1; T <= 32; T++) {
        const t = internal.tunedDecodeTiles({T, ...shape});
        for (const [nv, ks, pairs] of [[t.upNv, t.upKs, 2], [t.downNv, t.downKs, 1]]) {
          expect(nv * ks).withContext(`T = ${T} ${JSON.stringify(t)}`).toBe(256);
          expect(nv % pairs).toBe(0);
        }
        expect(t.upRows).toBeGreaterThanOrEqual(1);
        expect(t.routerPartials).toBeGreaterThanOrEqual(1);
        expect(['rounds', 'keys', 'rank']).toContain(t.routeTopk);
        expect([undefined, 'loop', 'mask']).toContain(t.routePlace);
        expect(Number.isInteger(Math.log2(t.routeLanes))).toBeTrue();
        expect([undefined, true, false]).toContain(t.fold);
      }
    }
    for (const entry of internal.DECODE_TUNING) {
      expect(entry.minTokens).toBeLessThanOrEqual(entry.maxTokens);
      expect(entry.source).toMatch(/BENCHMARKS\.md/);
    }
  });

  it('picks the first matching entry: a shape-specific one before the any-shape default', () => {
    const table = [{where: {H: 8}, minTokens: 1, maxTokens: 4, source: 'a',
                    tiles: {upNv: 2, upKs: 128, downNv: 1, downKs: 256, upRows: 3, routerPartials: 7, routeLanes: 2,
                            routeTopk: 'rank' as const}},
                   {minTokens: 1, maxTokens: 32, source: 'b', tiles: {upNv: 8, upKs: 32, downNv: 4, downKs: 64,
                    upRows: 16, routerPartials: 16384, routeLanes: 256, routeTopk: 'rounds' as const}}];
    expect(internal.tunedDecodeTiles({T: 4, H: 8, I: 4, E: 4, K: 2}, table).upRows).toBe(3);
    expect(internal.tunedDecodeTiles({T: 5, H: 8, I: 4, E: 4, K: 2}, table).upRows).toBe(16);
    expect(internal.tunedDecodeTiles({T: 4, H: 16, I: 4, E: 4, K: 2}, table).upRows).toBe(16);
    expect(() => internal.tunedDecodeTiles({T: 33, H: 8, I: 4, E: 4, K: 2}, table))
        .toThrowError(/no tuning entry for T = 33/);
    // bits: an entry for 4-bit codes is not taken by float32 weights (bits 32, also when absent).
    const byBits = [{...table[0], where: {bits: 4}}, table[1]];
    expect(internal.tunedDecodeTiles({T: 4, H: 8, I: 4, E: 4, K: 2, bits: 4}, byBits).upRows).toBe(3);
    expect(internal.tunedDecodeTiles({T: 4, H: 8, I: 4, E: 4, K: 2}, byBits).upRows).toBe(16);
    expect(internal.tunedDecodeTiles({T: 4, H: 8, I: 4, E: 4, K: 2, bits: 8}, byBits).upRows).toBe(16);
  });
});

describeWebGPU('webgpu decode path (whole layer in four programs)', () => {
  const defaultMaxTokens = moe.webgpuDecodeMaxTokens();
  afterEach(() => moe.setWebGPUDecodeMaxTokens(defaultMaxTokens));

  for (const c of CASES) {
    it(`${c.label}: matches the float64 reference in 4 programs, no readback, no leak`, async () => {
      const rand = rng(c.label.length * 31 + c.H);
      const plansBefore = internal.decodePlanCount();
      const baseline = tf.memory().numTensors;
      const {layer, data} = randomLayer({...c.args, backend: 'webgpu'}, c.H, rand);
      const withWeights = tf.memory().numTensors;
      if (c.maxTokens != null) moe.setWebGPUDecodeMaxTokens(c.maxTokens);
      for (const T of c.T) {
        // Twice: the second call reuses the plan (cached bind groups and buffers).
        for (const pass of [0, 1]) {
          const x = randn(rand, T * c.H);
          const input = tf.tensor2d(x, [T, c.H]);
          const dispatched = internal.decodeDispatchCount();
          const {result: {result: out, reads}, programs} =
              countTfjsPrograms(() => countBackendReads(() => layer.apply(input) as tf.Tensor));
          expect(reads).withContext('GPU->CPU reads during apply()').toBe(0);
          expect(programs).withContext('tfjs programs per forward').toBe(0);
          expect(internal.decodeDispatchCount() - dispatched).withContext('decode programs per forward').toBe(4);
          expect(out.shape).toEqual([T, c.H]);
          const got = await out.data();
          tf.dispose([input, out]);
          expect(tf.memory().numTensors).withContext('tensors after a forward').toBe(withWeights);
          const err = relError(got, referenceOutput(layer.options, data, x, T, c.H));
          recordError(`webgpu decode: ${c.label}`, err);
          expect(err).withContext(`T = ${T}, call ${pass}`).toBeLessThan(TOLERANCE);
        }
      }
      expect(internal.decodePlanCount()).toBe(plansBefore + c.T.length);
      layer.dispose();
      expect(internal.decodePlanCount()).withContext('plans after dispose').toBe(plansBefore);
      expect(tf.memory().numTensors).toBe(baseline);
    }, SLOW_MS);
  }

  it('every launch shape (setWebGPUDecodeTiles) matches the reference; a change of shape rebuilds the plan',
     async () => {
       const rand = rng(5150);
       const H = 16, T = 3;
       const {layer, data} = randomLayer({numExperts: 6, topK: 2, moeIntermediateSize: 12, withBias: true,
         sharedExpertIntermediateSize: 8, backend: 'webgpu'}, H, rand);
       const x = randn(rand, T * H);
       try {
         // The extremes (the defaults run in every other case): one column pair / many k-lanes, and no k-lanes.
         // upRows 1: every expert's rows in passes of one; routerPartials 1: one router split (one partial each).
         for (const tiles of [{upNv: 2, upKs: 128, downNv: 1, downKs: 256},
                              {upNv: 256, upKs: 1, downNv: 256, downKs: 1},
                              {upNv: 8, upKs: 32, downNv: 4, downKs: 64, upRows: 1, routerPartials: 1}]) {
           internal.setWebGPUDecodeTiles(tiles);
           const input = tf.tensor2d(x, [T, H]);
           const out = layer.apply(input) as tf.Tensor;
           const got = await out.data();
           tf.dispose([input, out]);
           const err = relError(got, referenceOutput(layer.options, data, x, T, H));
           recordError('webgpu decode: launch shapes', err);
           expect(err).withContext(JSON.stringify(tiles)).toBeLessThan(TOLERANCE);
           expect(internal.decodePlanCount()).toBeGreaterThan(0);
         }
         // noaux_tc routing (dropped groups never compete) with the rank top-k and few route lanes.
         const grouped = randomLayer({numExperts: 6, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 3,
           topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true, backend: 'webgpu'}, 8, rand);
         try {
           const xg = randn(rand, 4 * 8);
           for (const routeLanes of [1, 16]) {
             const tiles = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeTopk: 'rank' as const, routeLanes,
                            routeThreads: routeLanes === 16 ? 32 : 256, routeLoads: 'spread' as const};
             internal.setWebGPUDecodeTiles(tiles);
             const input = tf.tensor2d(xg, [4, 8]);
             const out = grouped.layer.apply(input) as tf.Tensor;
             const got = await out.data();
             tf.dispose([input, out]);
             const err = relError(got, referenceOutput(grouped.layer.options, grouped.data, xg, 4, 8));
             recordError('webgpu decode: launch shapes', err);
             expect(err).withContext(JSON.stringify(tiles)).toBeLessThan(TOLERANCE);
           }
         } finally {
           grouped.layer.dispose();
         }
         // 40 experts with one route lane per token (its top-k loop over all 40 candidates) and with two (20 each).
         const wide = randomLayer({numExperts: 40, topK: 3, moeIntermediateSize: 4, backend: 'webgpu'}, 8, rand);
         try {
           const xw = randn(rand, 4 * 8);
           for (const [routeThreads, routeLanes] of [[4, 256], [8, 2]]) {
             const tiles = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeThreads, routeLanes};
             internal.setWebGPUDecodeTiles(tiles);
             const input = tf.tensor2d(xw, [4, 8]);
             const out = wide.layer.apply(input) as tf.Tensor;
             const got = await out.data();
             tf.dispose([input, out]);
             const err = relError(got, referenceOutput(wide.layer.options, wide.data, xw, 4, 8));
             recordError('webgpu decode: launch shapes', err);
             expect(err).withContext(JSON.stringify(tiles)).toBeLessThan(TOLERANCE);
           }
         } finally {
           wide.layer.dispose();
         }
       } finally {
         internal.setWebGPUDecodeTiles(null);
         layer.dispose();
       }
     }, SLOW_MS);

  // The folded variant: routing inside every upGate workgroup, three programs; the same float64 reference, ties,
  // NaN rows, noaux_tc, correction bias, probInAdvance, biases and shared experts.
  const FOLDED: Array<[string, FusedMoEArgs, number, number[]]> = [
    ['greedy, renormalized', {numExperts: 6, topK: 2, moeIntermediateSize: 8}, 16, [1, 2]],
    ['noaux_tc, correction bias, scaling', {numExperts: 6, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc',
      nGroup: 3, topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true}, 8, [1, 2]],
    ['probInAdvance, biases, gated shared expert', {numExperts: 7, topK: 3, moeIntermediateSize: 4, withBias: true,
      probInAdvance: true, renormalize: false, sharedExpertIntermediateSize: 8, sharedExpertGate: true}, 12, [1, 2]],
    ['300 experts', {numExperts: 300, topK: 4, moeIntermediateSize: 4}, 4, [1]],
    // 9 storage bindings (with x and the output): above WebGPU's default limit of 8, the four programs run.
    ['biases, shared expert and a correction bias (9 bindings)', {numExperts: 7, topK: 3, moeIntermediateSize: 4,
      withBias: true, useCorrectionBias: true, sharedExpertIntermediateSize: 8}, 8, [1]],
  ];
  const FOLD_TILES = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, fold: true};
  for (const [label, args, H, Ts] of FOLDED) {
    it(`folded (3 programs where they fit): ${label} matches the float64 reference`, async () => {
      const rand = rng(label.length * 7 + H);
      const baseline = tf.memory().numTensors;
      const {layer, data} = randomLayer({...args, backend: 'webgpu'}, H, rand);
      const bindings = 3 + 1 + (args.withBias ? 1 : 0) + (args.sharedExpertIntermediateSize ? 1 : 0) +
          (args.useCorrectionBias ? 1 : 0) + 2;
      const limit = (tf.backend() as unknown as {device: {limits: {maxStorageBuffersPerShaderStage: number}}})
          .device.limits.maxStorageBuffersPerShaderStage;
      const programsPerForward = bindings <= limit ? 3 : 4;
      try {
        internal.setWebGPUDecodeTiles(FOLD_TILES);
        for (const T of Ts) {
          for (const pass of [0, 1]) {
            const x = randn(rand, T * H);
            const input = tf.tensor2d(x, [T, H]);
            const dispatched = internal.decodeDispatchCount();
            const out = layer.apply(input) as tf.Tensor;
            expect(internal.decodeDispatchCount() - dispatched).withContext('decode programs per forward')
                .toBe(programsPerForward);
            const got = await out.data();
            tf.dispose([input, out]);
            const err = relError(got, referenceOutput(layer.options, data, x, T, H));
            recordError(`webgpu decode folded: ${label}`, err);
            expect(err).withContext(`T = ${T}, call ${pass}`).toBeLessThan(TOLERANCE);
          }
        }
      } finally {
        internal.setWebGPUDecodeTiles(null);
        layer.dispose();
      }
      expect(tf.memory().numTensors).toBe(baseline);
    }, SLOW_MS);
  }

  it('rejects bad settings with an error naming the argument', () => {
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      fold: 1 as unknown as boolean})).toThrowError(/fold must be a boolean, got 1/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      downFlat: 'yes' as unknown as boolean})).toThrowError(/downFlat must be a boolean, got "yes"/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, downUnroll: 3}))
        .toThrowError(/downUnroll must be 1, 2 or 4, got 3/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, upUnroll: 8}))
        .toThrowError(/upUnroll must be 1, 2 or 4, got 8/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      routeLoads: 'all' as unknown as 'loop'})).toThrowError(/routeLoads must be 'loop' or 'spread', got "all"/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, routerUnroll: 0}))
        .toThrowError(/routerUnroll must be an integer in \[1, 16\], got 0/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeThreads: 48}))
        .toThrowError(/routeThreads must be a power of two in \[1, 256\], got 48/);
    expect(() => moe.setWebGPUDecodeMaxTokens(33)).toThrowError(/argument 'n' must be an integer in \[0, 32\], got 33/);
    expect(() => moe.setWebGPUDecodeMaxTokens(1.5)).toThrowError(/argument 'n'/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 16, downNv: 4, downKs: 64}))
        .toThrowError(/upNv \* upKs must be 256/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 3, downKs: 85}))
        .toThrowError(/downNv \* downKs must be 256/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, upRows: 0}))
        .toThrowError(/upRows must be an integer in \[1, 32\], got 0/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, routerPartials: 2.5}))
        .toThrowError(/routerPartials must be a positive integer, got 2.5/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeLanes: 3}))
        .toThrowError(/routeLanes must be a power of two in \[1, 256\], got 3/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      routeTopk: 'heap' as 'keys'})).toThrowError(/routeTopk must be 'rounds', 'keys' or 'rank', got "heap"/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      routePlace: 'scan' as 'mask'})).toThrowError(/routePlace must be 'loop' or 'mask', got "scan"/);
    expect(() => internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 4, downKs: 64,
      routeSubgroups: 1 as unknown as boolean})).toThrowError(/routeSubgroups must be a boolean, got 1/);
  });

  it('breaks routing ties toward the lower expert and treats a NaN token like the op chain does (also folded)', async () => {
    // The shape of the first case (its pipelines are compiled already).
    const rand = rng(31337);
    const H = 16, T = 3, E = 6;
    const {layer, data} = randomLayer({numExperts: E, topK: 2, moeIntermediateSize: 8, backend: 'webgpu'}, H, rand);
    // Experts 1 and 2, and 4 and 5, get identical router columns: every token sees exact ties.
    const gate = data.gate_weight;
    for (let h = 0; h < H; h++) {
      gate[h * E + 2] = gate[h * E + 1];
      gate[h * E + 5] = gate[h * E + 4];
    }
    const gateTensor = tf.tensor2d(gate, [H, E]);
    layer.setNamedWeights({gate_weight: gateTensor});
    gateTensor.dispose();
    const x = randn(rand, T * H);
    const run = async (values: Float32Array) => {
      const input = tf.tensor2d(values, [T, H]);
      const out = layer.apply(input) as tf.Tensor;
      const got = await out.data();
      tf.dispose([input, out]);
      return got;
    };
    const withNaN = x.slice();
    withNaN[H + 3] = NaN;
    moe.setWebGPUDecodeMaxTokens(0);
    const chained = await run(withNaN);
    moe.setWebGPUDecodeMaxTokens(defaultMaxTokens);
    // The route program's top-k both ways: K rounds of a lane arg-max, and by rank (with two lanes per token).
    // And folded: every upGate workgroup routes with the same code (3 programs).
    // A route workgroup of 4 threads (one lane per token, every expert serially) too; the partial logits summed
    // spread over the threads (4 programs and folded; 32 threads: one thread per logit), the router unrolled.
    const base = {upNv: 8, upKs: 32, downNv: 4, downKs: 64};
    const variants: Array<internal.DecodeTilesOverride | null> = [null, {...base, routeTopk: 'rank' as const, routeLanes: 2},
                      FOLD_TILES, {...base, routeThreads: 4}, {...base, routeLoads: 'spread' as const, routerUnroll: 3},
                      {...FOLD_TILES, routeLoads: 'spread' as const}, {...base, routeLoads: 'spread' as const, routeThreads: 32}];
    try {
      for (const tiles of variants) {
        internal.setWebGPUDecodeTiles(tiles);
        const dispatched = internal.decodeDispatchCount();
        const tied = await run(x);
        expect(internal.decodeDispatchCount() - dispatched).toBe(tiles?.fold === true ? 3 : 4);
        expect(relError(tied, referenceOutput(layer.options, data, x, T, H))).withContext(JSON.stringify(tiles))
            .toBeLessThan(TOLERANCE);
        const decoded = await run(withNaN);
        for (let i = 0; i < decoded.length; i++) {
          expect(Number.isNaN(decoded[i])).withContext(`element ${i} NaN`).toBe(Number.isNaN(chained[i]));
        }
        expect(relError(decoded.filter(v => !Number.isNaN(v)), chained.filter(v => !Number.isNaN(v))))
            .toBeLessThan(TOLERANCE);
        expect(decoded.slice(0, H).every(v => Number.isFinite(v))).withContext('the other tokens stay finite')
            .toBeTrue();
      }
    } finally {
      internal.setWebGPUDecodeTiles(null);
      layer.dispose();
    }
  }, SLOW_MS);

  it('submits after a forward when MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES says so, with the same result', async () => {
    const rand = rng(777);
    const H = 16, T = 1;
    const {layer, data} = randomLayer({numExperts: 6, topK: 2, moeIntermediateSize: 8, backend: 'webgpu'}, H, rand);
    const x = randn(rand, T * H);
    const backend = tf.backend() as unknown as {commandEncoder: unknown};
    const defaultSubmit = tf.env().getNumber(moe.MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES);
    expect(defaultSubmit).withContext('the measured default (BENCHMARKS.md)').toBe(8);
    try {
      for (const submitAt of [4, 0]) {
        tf.env().set(moe.MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, submitAt);
        const input = tf.tensor2d(x, [T, H]);
        const out = layer.apply(input) as tf.Tensor;
        // 4 dispatches reach 4 (submitted: no open encoder); tfjs's batch of 15 is not reached by one forward.
        expect(backend.commandEncoder == null).withContext(`submit at ${submitAt}`).toBe(submitAt === 4);
        const got = await out.data();
        tf.dispose([input, out]);
        expect(relError(got, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
      }
    } finally {
      tf.env().set(moe.MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES, defaultSubmit);
      layer.dispose();
    }
  }, SLOW_MS);

  it('rebuilds its plan when a weight changes', async () => {
    const rand = rng(4242);
    // The second case's layer shape and options at its T: its pipelines are compiled already (a rebuilt plan binds
    // the new buffers; it compiles nothing new).
    const H = 12, T = 2, E = 7, I = 4;
    const {layer} = randomLayer({numExperts: E, topK: 3, moeIntermediateSize: I, renormalize: false,
                                 useCorrectionBias: true, withBias: true, backend: 'webgpu'}, H, rand);
    const x = randn(rand, T * H);
    const apply = async () => {
      const input = tf.tensor2d(x, [T, H]);
      const out = layer.apply(input) as tf.Tensor;
      const got = await out.data();
      tf.dispose([input, out]);
      return got;
    };
    await apply();
    const down = randn(rand, E * I * H, 0.4);
    const downBias = randn(rand, E * H, 0.2);
    const values = {down_proj_weight: tf.tensor3d(down, [E, I, H]), down_proj_bias: tf.tensor2d(downBias, [E, H])};
    layer.setNamedWeights(values);
    tf.dispose(Object.values(values));
    const data: Record<string, Float32Array> = {};
    for (const [name, t] of Object.entries(layer.namedWeights())) data[name] = await (t as tf.Tensor).data() as Float32Array;
    const dispatched = internal.decodeDispatchCount();
    const got = await apply();
    expect(internal.decodeDispatchCount() - dispatched).toBe(4);
    const err = relError(got, referenceOutput(layer.options, data, x, T, H));
    expect(err).toBeLessThan(TOLERANCE);
    layer.dispose();
  }, SLOW_MS);

  it('router partial logits summed spread over the route threads (several splits per thread) and the router unrolled',
     async () => {
       // H = 64: 4 router splits; T * E = 12 logits: 256 threads give 4 per logit (one split each), 32 threads 2
       // per logit (2 splits each), 4 threads 3 logits each (all 12 loads of their 4 splits at once); routerUnroll 4
       // runs past each split's 2 row steps per lane.
       const rand = rng(2024);
       const H = 64, T = 2;
       const {layer, data} = randomLayer({numExperts: 6, topK: 2, moeIntermediateSize: 8, backend: 'webgpu'}, H, rand);
       const x = randn(rand, T * H);
       try {
         for (const extra of [{routeThreads: 32}, {routeThreads: 4}, {routerUnroll: 4}, {fold: true, routerUnroll: 2},
                              {routerVec4: true}]) {
           const tiles = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeLoads: 'spread' as const, ...extra};
           internal.setWebGPUDecodeTiles(tiles);
           const input = tf.tensor2d(x, [T, H]);
           const out = layer.apply(input) as tf.Tensor;
           const got = await out.data();
           tf.dispose([input, out]);
           const err = relError(got, referenceOutput(layer.options, data, x, T, H));
           recordError('webgpu decode: spread router partials', err);
           expect(err).withContext(JSON.stringify(tiles)).toBeLessThan(TOLERANCE);
         }
       } finally {
         internal.setWebGPUDecodeTiles(null);
         layer.dispose();
       }
     }, SLOW_MS);

  it('the router reading x as vec4 (routerVec4): uneven splits of row quads, a gated shared expert, folded', async () => {
    // H = 20: 5 row quads in 2 router splits (3 + 2) and 2 shared-gate splits; T = 5 and 2 (folded).
    const rand = rng(4242);
    const H = 20;
    const {layer, data} = randomLayer({numExperts: 6, topK: 2, moeIntermediateSize: 8, sharedExpertIntermediateSize: 4,
      sharedExpertGate: true, backend: 'webgpu'}, H, rand);
    try {
      for (const [T, fold] of [[5, false], [2, true]] as const) {
        const tiles = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routerVec4: true, fold};
        internal.setWebGPUDecodeTiles(tiles);
        const x = randn(rand, T * H);
        const input = tf.tensor2d(x, [T, H]);
        const out = layer.apply(input) as tf.Tensor;
        const got = await out.data();
        tf.dispose([input, out]);
        const err = relError(got, referenceOutput(layer.options, data, x, T, H));
        recordError('webgpu decode: router vec4', err);
        expect(err).withContext(JSON.stringify(tiles)).toBeLessThan(TOLERANCE);
      }
    } finally {
      internal.setWebGPUDecodeTiles(null);
      layer.dispose();
    }
  }, SLOW_MS);

  it('float weights with the down program on items (downFlat, unroll 1 and 4) and upGate unrolled match the reference', async () => {
    const rand = rng(8080);
    const H = 16, T = 3;
    const {layer, data} = randomLayer({numExperts: 6, topK: 3, moeIntermediateSize: 12, withBias: true,
      sharedExpertIntermediateSize: 8, backend: 'webgpu'}, H, rand);
    const x = randn(rand, T * H);
    try {
      for (const downUnroll of [1, 4]) {
        // upUnroll with the shared expert's stream too; H4 = 4 over 32 k-lanes: most unrolled steps past H4.
        internal.setWebGPUDecodeTiles({upNv: 8, upKs: 32, downNv: 2, downKs: 128, downFlat: true, downUnroll,
                                       upUnroll: downUnroll});
        const input = tf.tensor2d(x, [T, H]);
        const out = layer.apply(input) as tf.Tensor;
        const got = await out.data();
        tf.dispose([input, out]);
        const err = relError(got, referenceOutput(layer.options, data, x, T, H));
        recordError('webgpu decode: down items', err);
        expect(err).withContext(`unroll ${downUnroll}`).toBeLessThan(TOLERANCE);
      }
    } finally {
      internal.setWebGPUDecodeTiles(null);
      layer.dispose();
    }
  }, SLOW_MS);

  const fallbacks: Array<[string, FusedMoEArgs, number, () => void]> = [
    ['latent projections', {numExperts: 4, topK: 2, moeIntermediateSize: 4, latentSize: 4}, 2, () => undefined],
    ['T above the decode limit', {numExperts: 4, topK: 2, moeIntermediateSize: 4}, 5,
     () => moe.setWebGPUDecodeMaxTokens(4)],
    ['H not a multiple of 4', {numExperts: 4, topK: 2, moeIntermediateSize: 4}, 2, () => undefined],
    // The routing options of docs/semantics.md section 11 (the decode route program has none of them).
    ['group_limited_greedy', {numExperts: 8, topK: 3, moeIntermediateSize: 4, topkMethod: 'group_limited_greedy',
      nGroup: 4, topkGroup: 1, renormalize: false, routedScalingFactor: 1.5}, 3, () => undefined],
    ['routedScalingFactor on greedy', {numExperts: 4, topK: 2, moeIntermediateSize: 4, routedScalingFactor: 2.5}, 2,
     () => undefined],
    ['renormalizeEpsilon', {numExperts: 4, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc',
      renormalizeEpsilon: 1e-6}, 2, () => undefined],
    ['zero experts', {numExperts: 4, topK: 2, moeIntermediateSize: 4, zeroExperts: 2, useCorrectionBias: true}, 3,
     () => undefined],
    ['a router bias and clamped SwiGLU (gpt-oss)', {numExperts: 4, topK: 2, moeIntermediateSize: 4, routerBias: true,
      activation: 'clamped_swiglu', swigluLimit: 0.5}, 2, () => undefined],
    ['routingWeightOn input (Llama-4)', {numExperts: 4, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc',
      renormalize: false, routingWeightOn: 'input'}, 2, () => undefined],
  ];
  it('falls back to the op chain for packed weights needing more storage bindings than the device allows', async () => {
    // int4 with zero points and expert biases: the down program would bind codes, scales, zero points, route, act,
    // work, bias, x and the output (9 > WebGPU's default 8).
    const limit = (tf.backend() as unknown as {device: {limits: {maxStorageBuffersPerShaderStage: number}}})
        .device.limits.maxStorageBuffersPerShaderStage;
    if (limit > 8) pending(`this device allows ${limit} storage bindings (the fallback needs 8)`);
    const rand = rng(99);
    const H = 8, T = 2;
    const {layer, data} = await packedLayer({numExperts: 4, topK: 2, moeIntermediateSize: 8, withBias: true}, H,
                                            {label: 'int4 g32 zp', format: 'int4', zeroPoint: true}, rand);
    const x = randn(rand, T * H);
    const input = tf.tensor2d(x, [T, H]);
    const dispatched = internal.decodeDispatchCount();
    const out = layer.apply(input) as tf.Tensor;
    expect(internal.decodeDispatchCount()).withContext('no decode program').toBe(dispatched);
    const got = await out.data();
    tf.dispose([input, out]);
    expect(relError(got, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
    layer.dispose();
  }, SLOW_MS);

  for (const [label, args, T, setup] of fallbacks) {
    it(`falls back to the op chain for ${label} and still matches the reference`, async () => {
      const rand = rng(label.length);
      const H = label.startsWith('H not') ? 6 : 8;
      const {layer, data} = randomLayer({...args, backend: 'webgpu'}, H, rand);
      setup();
      const x = randn(rand, T * H);
      const input = tf.tensor2d(x, [T, H]);
      const dispatched = internal.decodeDispatchCount();
      const out = layer.apply(input) as tf.Tensor;
      expect(internal.decodeDispatchCount()).withContext('no decode program').toBe(dispatched);
      const got = await out.data();
      tf.dispose([input, out]);
      expect(relError(got, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
      layer.dispose();
    }, SLOW_MS);
  }

  it('takes the op chain under a gradient tape (the decode programs have no gradient)', async () => {
    const rand = rng(9);
    const H = 8, T = 2;
    const {layer} = randomLayer({numExperts: 4, topK: 2, moeIntermediateSize: 4, backend: 'webgpu'}, H, rand);
    const input = tf.tensor2d(randn(rand, T * H), [T, H]);
    const dispatched = internal.decodeDispatchCount();
    const g = tf.grad((xx: tf.Tensor) => (layer.apply(xx) as tf.Tensor).sum())(input);
    expect(internal.decodeDispatchCount()).toBe(dispatched);
    expect(g.shape).toEqual([T, H]);
    await g.data();
    tf.dispose([g, input]);
    layer.dispose();
  }, SLOW_MS);
});
