// The webgpu prefill path (src/kernels/webgpu/prefill): the op chain's programs recorded on a layer's first call at
// a T and replayed after, through the FusedMoE layer on random small shapes and options: every call matches the
// float64 reference and is bit for bit the op chain's output (MOE_WEBGPU_PREFILL_REPLAY off), replays run no tfjs
// program and read nothing back, nothing leaks, plans are freed on dispose and rebuilt on a weight or flag change,
// and weights split into expert ranges run the op chain. (The gradient tape's fallback is the decode spec's: the
// same check, in layer_forward.ts, guards both paths.)
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';
import * as internal from 'tfjs-moe/internal';
import type {FusedMoEArgs} from 'tfjs-moe';

import {countBackendReads, randInt, recordError, relError, rng} from '../helpers/util.js';
import {LayerFormatVariant, packedLayer} from '../layers/layer_formats_cases.js';
import {applyAndRead, randn, randomLayer, referenceOutput} from '../layers/layer_util.js';
import {countTfjsPrograms} from './program_count.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW_MS = 300_000;
const TOLERANCE = 1e-4;

/** The op chain's output through tfjs (the path's flag off). */
async function opChainOutput(layer: moe.FusedMoE, x: Float32Array, T: number, H: number): Promise<Float32Array> {
  tf.env().set(internal.MOE_WEBGPU_PREFILL_REPLAY, false);
  try {
    return await applyAndRead(layer, x, [T, H]);
  } finally {
    tf.env().set(internal.MOE_WEBGPU_PREFILL_REPLAY, true);
  }
}

function firstDifference(a: Float32Array, b: Float32Array): number {
  return a.findIndex((v, i) => !Object.is(v, b[i]));
}

interface Case {
  label: string;
  args: FusedMoEArgs;
  /** Routed experts stored in this format (else float32). */
  format?: LayerFormatVariant;
}

// Random shapes on top of each case's options (drawn per case from its seed).
const CASES: Case[] = [
  {label: 'greedy, renormalized, expert biases', args: {numExperts: 6, topK: 2, moeIntermediateSize: 8, withBias: true}},
  {label: 'noaux_tc with correction bias, gated shared expert, probInAdvance',
   args: {numExperts: 8, topK: 3, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 2,
          routedScalingFactor: 2.5, useCorrectionBias: true, sharedExpertIntermediateSize: 8, sharedExpertGate: true,
          probInAdvance: true}},
  {label: 'int4 g32 experts', args: {numExperts: 6, topK: 2, moeIntermediateSize: 8},
   format: {label: 'int4 g32', format: 'int4'}},
];

describeWebGPU('webgpu prefill path (the op chain recorded once, replayed)', () => {
  for (const c of CASES) {
    it(`${c.label}: replays match the float64 reference and the op chain bit for bit, no readback, no leak`,
       async () => {
         const rand = rng(c.label.length * 17 + 3);
         const H = 4 * randInt(rand, 2, 4);
         const plansBefore = internal.prefillPlanCount();
         const baseline = tf.memory().numTensors;
         const {layer, data} = c.format == null ? randomLayer({...c.args, backend: 'webgpu'}, H, rand) :
             await packedLayer(c.args, H, c.format, rand);
         const withWeights = tf.memory().numTensors;
         // Past the decode limit (16): the first call at a T records, the next ones replay, also after another T.
         const Ts = [randInt(rand, 17, 24), randInt(rand, 25, 33)];
         const xs = Ts.map(T => randn(rand, T * H));
         const chains: Float32Array[] = [];
         for (const [i, call] of [[0, 0], [0, 1], [1, 0], [0, 2]]) {
           const T = Ts[i], x = xs[i];
           const input = tf.tensor2d(x, [T, H]);
           const replayed = internal.prefillDispatchCount();
           const {result: {result: out, reads}, programs} =
               countTfjsPrograms(() => countBackendReads(() => layer.apply(input) as tf.Tensor));
           expect(reads).withContext('GPU->CPU reads during apply()').toBe(0);
           const got = await out.data() as Float32Array;
           tf.dispose([input, out]);
           expect(tf.memory().numTensors).withContext('tensors after a forward').toBe(withWeights);
           expect(internal.prefillDeclinedReason(layer, T)).toBeNull();
           if (call > 0) {
             expect(programs).withContext('tfjs programs in a replay').toBe(0);
             expect(internal.prefillDispatchCount() - replayed).withContext('programs replayed').toBeGreaterThan(4);
           }
           const err = relError(got, referenceOutput(layer.options, data, x, T, H));
           recordError(`webgpu prefill: ${c.label}`, err);
           expect(err).withContext(`T = ${T}, call ${call}`).toBeLessThan(TOLERANCE);
           chains[i] ??= await opChainOutput(layer, x, T, H);
           expect(firstDifference(got, chains[i])).withContext(`T = ${T}, call ${call}: first element unlike the op chain's`)
               .toBe(-1);
         }
         expect(internal.prefillPlanCount()).toBe(plansBefore + 2);
         layer.dispose();
         expect(internal.prefillPlanCount()).withContext('plans after dispose').toBe(plansBefore);
         expect(tf.memory().numTensors).toBe(baseline);
       }, SLOW_MS);
  }

  it('rebuilds on a weight write and on a flag change; declines for weights in expert ranges',
     async () => {
       const rand = rng(4242);
       const H = 8, T = 20;
       const {layer, data} = randomLayer({numExperts: 4, topK: 2, moeIntermediateSize: 8, backend: 'webgpu'}, H, rand);
       const x = randn(rand, T * H);
       const run = () => applyAndRead(layer, x, [T, H]);
       try {
         await run();
         const first = await run();
         // A new down projection: the plan must read the new weights.
         const named = layer.namedWeights();
         const down = named.down_proj_weight as tf.Tensor;
         const newDown = tf.tensor(randn(rand, down.size, 0.4), down.shape);
         layer.setNamedWeights({down_proj_weight: newDown});
         newDown.dispose();
         data.down_proj_weight = await (layer.namedWeights().down_proj_weight as tf.Tensor).data() as Float32Array;
         const rewritten = await run();
         expect(firstDifference(rewritten, first)).not.toBe(-1);
         expect(relError(rewritten, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
         // Another GEMM variant through its flag: recorded again, still the op chain's output.
         internal.setWebGPUGemmPreset('tiled16');
         await run();
         const preset = await run();
         expect(firstDifference(preset, await opChainOutput(layer, x, T, H))).toBe(-1);
         expect(relError(preset, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
         internal.setWebGPUGemmPreset(null);
         // Weights past the binding limit run in expert ranges (cached copies): not replayable, the op chain runs.
         internal.setMaxStorageBindingBytes(1024);
         await run();
         expect(internal.prefillDeclinedReason(layer, T)).toMatch(/outside the op chain's programs/);
         const before = internal.prefillDispatchCount();
         const ranged = await run();
         expect(internal.prefillDispatchCount()).toBe(before);
         expect(relError(ranged, referenceOutput(layer.options, data, x, T, H))).toBeLessThan(TOLERANCE);
       } finally {
         internal.setMaxStorageBindingBytes(null);
         internal.setWebGPUGemmPreset(null);
         layer.dispose();
       }
     }, SLOW_MS);
});
