// The decode route program's variants (decode_programs.ts routeParts): the 'keys' top-k (candidates in registers),
// the token lanes' reductions by subgroup shuffles where the device has subgroups, and the mask placement. With
// the same lanes per token they select the same experts in the same order with the same sums as the rounds, so
// each variant's output must equal its rounds twin's bit for bit (with subgroups a token may get fewer lanes: the
// subgroup size caps them), and every variant the float64 reference, with tied logits (a duplicated router
// column). SwiftShader (CI) has subgroups, 4 wide; initWebGPUForNode asks for them by default.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as internal from 'tfjs-moe/internal';
import type {FusedMoEArgs} from 'tfjs-moe';
import {initWebGPUForNode} from 'tfjs-moe/node';

import {recordError, relError, rng} from '../helpers/util.js';
import {randn, randomLayer, referenceOutput} from '../layers/layer_util.js';
import {describeWebGPU} from './webgpu_env.js';

const TOLERANCE = 1e-4;
// Every route field explicit (the tuning table's choices fill the fields an override leaves out).
const BASE = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routeTopk: 'rounds', routeSubgroups: false, routePlace: 'loop'} as const;
const ROUNDS_SUBGROUPS = {...BASE, routeSubgroups: true} as const;
// [variant, its twin with the rounds and the loop placement].
const VARIANTS = {
  'keys, subgroups, mask': [{...BASE, routeTopk: 'keys', routeSubgroups: true, routePlace: 'mask'}, ROUNDS_SUBGROUPS],
  'keys, workgroup memory, mask': [{...BASE, routeTopk: 'keys', routePlace: 'mask'}, BASE],
} as const;

describeWebGPU('webgpu decode route variants (keys top-k, subgroups, mask placement)', () => {
  it('the device has subgroups where the adapter has them (then the subgroup variants run their shuffles)', async () => {
    const status = await initWebGPUForNode({setBackend: false});
    const device = (tf.backend() as unknown as {device: {features: {has(f: string): boolean}}}).device;
    expect(device.features.has('subgroups')).toBe(status.features?.includes('subgroups') === true);
  });

  // [label, args, H, T, variants]. One layer shape, decode_webgpu.spec.ts's 40-expert one with the same tiles, so the
  // expert programs' pipelines are shared (keyed by their WGSL): only route programs compile here.
  const CASES: Array<[string, FusedMoEArgs, number, number, Array<keyof typeof VARIANTS>]> = [
    ['softmax, 40 experts', {numExperts: 40, topK: 3, moeIntermediateSize: 4}, 8, 4,
     ['keys, subgroups, mask', 'keys, workgroup memory, mask']],
    ['noaux_tc, correction bias', {numExperts: 40, topK: 3, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 4,
      topkGroup: 2, routedScalingFactor: 2.5, useCorrectionBias: true}, 8, 4, ['keys, subgroups, mask']],
  ];
  for (const [label, args, H, T, variants] of CASES) {
    it(`${label}: each variant equals its rounds twin bitwise, and the float64 reference`, async () => {
      const rand = rng(label.length * 13 + T);
      const baseline = tf.memory().numTensors;
      const {layer, data} = randomLayer({...args, backend: 'webgpu'}, H, rand);
      // Ties: expert 1's router column is expert 0's (equal logits, the smaller expert first).
      const E = args.numExperts;
      for (let h = 0; h < H; h++) data.gate_weight[h * E + 1] = data.gate_weight[h * E];
      const g = tf.tensor2d(data.gate_weight, [H, E]);
      layer.setNamedWeights({gate_weight: g});
      g.dispose();
      const x = randn(rand, T * H);
      const run = async (tiles: internal.DecodeTilesOverride | null) => {
        internal.setWebGPUDecodeTiles(tiles);
        const input = tf.tensor2d(x, [T, H]);
        const out = layer.apply(input) as tf.Tensor;
        const got = await out.data() as Float32Array;
        tf.dispose([input, out]);
        return got;
      };
      try {
        const ref = referenceOutput(layer.options, data, x, T, H);
        const twins = new Map<unknown, Float32Array>();
        for (const twin of new Set(variants.map(v => VARIANTS[v][1]))) {
          const got = await run(twin);
          expect(relError(got, ref)).withContext(JSON.stringify(twin)).toBeLessThan(TOLERANCE);
          twins.set(twin, got);
        }
        for (const name of variants) {
          const [tiles, twin] = VARIANTS[name];
          const got = await run(tiles as internal.DecodeTilesOverride);
          const err = relError(got, ref);
          recordError(`webgpu decode route: ${label}`, err);
          expect(err).withContext(name).toBeLessThan(TOLERANCE);
          const want = twins.get(twin)!;
          let differing = 0;
          for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) differing++;
          expect(differing).withContext(`${name}: outputs differing from its rounds twin's`).toBe(0);
        }
      } finally {
        internal.setWebGPUDecodeTiles(null);
        layer.dispose();
      }
      expect(tf.memory().numTensors).toBe(baseline);
    }, 120_000);
  }
});
