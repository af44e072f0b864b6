// The whole-layer decode path on webgpu with packed expert weights (src/kernels/webgpu/decode, the word decoders
// in the up/down stream loops): every format of docs/formats.md and the decoder options against the float64
// reference on the format's own dequantized weights, through the FusedMoE layer. Split from decode_webgpu.spec.ts
// (float weights: routing, launch shapes, fallbacks) so that the two halves can run in parallel spec processes
// (scripts/run-specs.mjs --jobs); they share no pipelines (the packed programs are keyed by their formats).
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as internal from 'tfjs-moe/internal';
import type {FusedMoEArgs} from 'tfjs-moe';

import {recordError, relError, rng} from '../helpers/util.js';
import {LAYER_FORMAT_VARIANTS, LayerFormatVariant, packedLayer} from '../layers/layer_formats_cases.js';
import {randn, referenceOutput} from '../layers/layer_util.js';
import {countTfjsPrograms} from './program_count.js';
import {describeWebGPU} from './webgpu_env.js';

const SLOW_MS = 300_000;
const TOLERANCE = 1e-4;

describeWebGPU('webgpu decode path, packed expert weights', () => {
  // Packed expert weights, every format of docs/formats.md (the word decoders in the up/down stream loops): the
  // float64 reference on the format's own dequantized weights. H = 40, I = 36: partial stream steps (32 codes for
  // 4-bit formats), partial groups (int4 g32 / g64 over 40, g128 over 36), int8 g8 decoded weight by weight.
  const PACKED_VARIANTS: LayerFormatVariant[] = [...LAYER_FORMAT_VARIANTS.filter(v => v.format !== 'float32'),
    {label: 'int4 g128', format: 'int4', groupSize: 128}];
  it('packed expert weights, every format: match the float64 reference on the dequantized weights in 4 programs',
     async () => {
       const H = 40, args = {numExperts: 5, topK: 2, moeIntermediateSize: 36};
       for (const [i, v] of PACKED_VARIANTS.entries()) {
         const rand = rng(600 + i);
         const baseline = tf.memory().numTensors;
         const {layer, data} = await packedLayer(args, H, v, rand);
         const withWeights = tf.memory().numTensors;
         // T = 3 (an expert with several rows) on every format; T = 1 with two of them. Each quad of codes decoded
         // once for 2 rows in registers (an expert with 3 rows streams twice) on one format of each kind of step: no
         // scales, a scale per weight, per step, zero points (mxfp4: the options case below).
         const once: internal.DecodeTilesOverride = {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 2, decodeOnce: true};
         const onceToo = ['float16', 'int8 g8', 'int4 g32', 'int4 g64 zp'].includes(v.label);
         for (const [T, tiles] of [...(v.label === 'int4 g32' || v.label === 'float16' ? [[1, null] as const] : []),
                                   [3, null] as const, ...(onceToo ? [[3, once] as const] : [])]) {
           internal.setWebGPUDecodeTiles(tiles);
           const x = randn(rand, T * H);
           const input = tf.tensor2d(x, [T, H]);
           const dispatched = internal.decodeDispatchCount();
           const {result: out, programs} = countTfjsPrograms(() => layer.apply(input) as tf.Tensor);
           expect(programs).withContext(`${v.label}: tfjs programs per forward`).toBe(0);
           expect(internal.decodeDispatchCount() - dispatched).withContext(`${v.label}: decode programs`).toBe(4);
           const got = await out.data();
           tf.dispose([input, out]);
           expect(tf.memory().numTensors).withContext('tensors after a forward').toBe(withWeights);
           const err = relError(got, referenceOutput(layer.options, data, x, T, H));
           recordError(`webgpu decode packed: ${v.label}`, err);
           expect(err).withContext(`${v.label}, T = ${T}, ${JSON.stringify(tiles)}`).toBeLessThan(TOLERANCE);
         }
         internal.setWebGPUDecodeTiles(null);
         layer.dispose();
         expect(tf.memory().numTensors).withContext(v.label).toBe(baseline);
       }
     }, SLOW_MS);

  it('packed expert weights with options: biases, probInAdvance, a shared expert, folded; new weights rebuild',
     async () => {
       const cases: Array<[string, LayerFormatVariant, FusedMoEArgs, number, internal.DecodeTilesOverride | null,
                           number?]> = [
         ['mxfp4, expert biases (gpt-oss-like)', {label: 'mxfp4', format: 'mxfp4'},
          {numExperts: 4, topK: 2, moeIntermediateSize: 36, withBias: true}, 2, null],
         // The router in token groups with the shared gate's splits (one token per workgroup).
         ['int8, probInAdvance, gated shared expert, router token groups', {label: 'int8', format: 'int8'},
          {numExperts: 6, topK: 3, moeIntermediateSize: 8, probInAdvance: true, sharedExpertIntermediateSize: 8,
           sharedExpertGate: true}, 2, {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routerTokenGroups: 2}],
         ['int4 g32 zero point folded at T = 1, steps and items unrolled', {label: 'int4 g32 zp', format: 'int4', zeroPoint: true},
          {numExperts: 6, topK: 2, moeIntermediateSize: 36}, 1,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, fold: true, downUnroll: 2, upUnroll: 2}],
         // Integer codes by exponent bits (no int -> float conversion): the same exact values.
         ['int4 g64 zero point, exponent-bit codes', {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3, {upNv: 8, upKs: 32, downNv: 4, downKs: 64, exponentBits: true}],
         // ... and 4 steps / items per loop iteration in both expert programs.
         ['int8 g8, exponent-bit codes, unrolled', {label: 'int8 g8', format: 'int8', groupSize: 8},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, exponentBits: true, upUnroll: 4, downUnroll: 4}],
         // mxfp4 codes as float16 patterns (0.5 a half subnormal), every code of a word, decoded once for 2 rows.
         ['float16-pattern mxfp4 codes, decoded once, row cases', {label: 'mxfp4', format: 'mxfp4'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, e2m1Half: true, decodeOnce: true, upRows: 2, upRowCases: true}],
         // int4 codes as float16 patterns 1024 + c (two per unpack): zero points, partial groups (g128 over 36 / 40).
         ['int4 g64 zero point, float16-pattern codes, decoded once, down per expert 1 row at a time',
          {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, int4Half: true, decodeOnce: true, upRows: 2, downByExpert: true,
           downRows: 1}],
         ['int4 g128, float16-pattern codes, down per expert', {label: 'int4 g128', format: 'int4', groupSize: 128},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, int4Half: true, downByExpert: true}],
         // int4 codes as 1 + c / 16, the zero point off each row's lhs sum once per step (a partial last step: the
         // padding words decode to 1, their lhs is 0); each lane's next words loaded before the current step's FMAs.
         ['int4 g32 zero point, unit codes (halves), decoded once, prefetched',
          {label: 'int4 g32 zp', format: 'int4', zeroPoint: true}, {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, int4Unit: 'half', decodeOnce: true, upRows: 2, upPrefetch: true, downPrefetch: true}],
         ['int4 g64, unit codes (float bits), prefetched, down per expert', {label: 'int4 g64', format: 'int4', groupSize: 64},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, int4Unit: 'bits', upPrefetch: true, downPrefetch: true, downByExpert: true}],
         ['int4 g128 zero point, unit codes (halves), folded, prefetched',
          {label: 'int4 g128 zp', format: 'int4', groupSize: 128, zeroPoint: true},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 1,
          {upNv: 16, upKs: 16, downNv: 8, downKs: 32, int4Unit: 'half', fold: true, upPrefetch: true, downPrefetch: true}],
         ['float16, prefetched, 4 rows in registers', {label: 'float16', format: 'float16'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 4, upPrefetch: true, downPrefetch: true}],
         // H = 64, I = 32: whole steps, read unchecked (upGate as the Qwen3 T = 16 table: unit codes, decoded once
         // for 2 rows, not prefetched); the router's partials reduced 2 tokens per round (T = 3: a partial round).
         ['int4 g32 zero point, unit codes (halves), unchecked steps, down prefetched, router 2 tokens per reduction, unit info at once, down tile-major, row loops, router token groups',
          {label: 'int4 g32 zp', format: 'int4', zeroPoint: true}, {numExperts: 5, topK: 2, moeIntermediateSize: 32}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, int4Unit: 'half', decodeOnce: true, upRows: 2,
           downPrefetch: true, unchecked: true, routerReduceRows: 2, upInfoAtOnce: true, downTileMajor: true,
           upRowCases: true, upRowLoops: true, routerTokenGroups: 2}, 64],
         // upGate's rows of x staged in workgroup memory: 2 rows per pass over experts of up to 3 rows (two passes);
         // the router's partials of all 5 tokens in one reduction.
         ['bfloat16, unchecked steps, rows of x staged, router in 3 token groups, down tile-major', {label: 'bfloat16', format: 'bfloat16'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 32}, 5,
          {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 2, unchecked: true, upStageX: true, routerReduceRows: 16,
           downTileMajor: true, routerTokenGroups: 3}, 64],
         ['int4 g32, unit codes (halves), rows of x staged, folded, unit info at once, row cases', {label: 'int4 g32', format: 'int4'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 1,
          {upNv: 16, upKs: 16, downNv: 8, downKs: 32, int4Unit: 'half', upStageX: true, fold: true, upInfoAtOnce: true,
           decodeOnce: true, upRowCases: true}],
         ['int4 g32, exponent-bit codes', {label: 'int4 g32', format: 'int4'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 1, {upNv: 8, upKs: 32, downNv: 2, downKs: 128, exponentBits: true}],
       ];
       for (const [label, v, args, T, tiles, hidden] of cases) {
         const rand = rng(label.length * 13);
         const H = hidden ?? 40;
         const {layer, data} = await packedLayer(args, H, v, rand);
         internal.setWebGPUDecodeTiles(tiles);
         try {
           const x = randn(rand, T * H);
           const run = async () => {
             const input = tf.tensor2d(x, [T, H]);
             const dispatched = internal.decodeDispatchCount();
             const out = layer.apply(input) as tf.Tensor;
             expect(internal.decodeDispatchCount() - dispatched).withContext(label)
                 .toBe((tiles?.fold ? 3 : 4) + (tiles?.downByExpert ? 1 : 0));
             const got = await out.data();
             tf.dispose([input, out]);
             return got;
           };
           const err = relError(await run(), referenceOutput(layer.options, data, x, T, H));
           recordError(`webgpu decode packed: ${label}`, err);
           expect(err).withContext(label).toBeLessThan(TOLERANCE);
           if (label.startsWith('mxfp4')) {
             // New packed weights (new tensors): the plan is rebuilt on them.
             const fresh = await packedLayer(args, H, v, rng(4));
             const w = fresh.layer.namedWeights();
             layer.setNamedWeights({up_gate_proj_weight: w.up_gate_proj_weight, down_proj_weight: w.down_proj_weight});
             const err2 = relError(await run(), referenceOutput(layer.options,
                 {...data, up_gate_proj_weight: fresh.data.up_gate_proj_weight, down_proj_weight: fresh.data.down_proj_weight},
                 x, T, H));
             expect(err2).withContext(`${label}: after new weights`).toBeLessThan(TOLERANCE);
             fresh.layer.dispose();
           }
         } finally {
           internal.setWebGPUDecodeTiles(null);
           layer.dispose();
         }
       }
     }, SLOW_MS);

  it('packed down weights per active expert (downByExpert) and the combine program match the reference', async () => {
    // 5 programs (4 folded); downRows 2 over experts with up to 3 rows (two passes; downRows 1 and zero points: the
    // options case above); biases with probInAdvance; a shared expert keeps the per-token down program (4 programs).
    const base = {upNv: 8, upKs: 32, downNv: 4, downKs: 64, downByExpert: true};
    const cases: Array<[string, LayerFormatVariant, FusedMoEArgs, number, internal.DecodeTilesOverride, number]> = [
      ['int8 g8, probInAdvance, biases', {label: 'int8 g8', format: 'int8', groupSize: 8},
       {numExperts: 5, topK: 2, moeIntermediateSize: 36, probInAdvance: true, withBias: true}, 3,
       {...base, downRows: 2}, 5],
      ['float16 folded at T = 1', {label: 'float16', format: 'float16'}, {numExperts: 5, topK: 2, moeIntermediateSize: 36},
       1, {...base, fold: true}, 4],
      ['float16-pattern mxfp4 codes', {label: 'mxfp4', format: 'mxfp4'}, {numExperts: 5, topK: 3, moeIntermediateSize: 36},
       3, {...base, e2m1Half: true}, 5],
      ['int8 with a shared expert (per-token down)', {label: 'int8', format: 'int8'},
       {numExperts: 5, topK: 2, moeIntermediateSize: 36, sharedExpertIntermediateSize: 8}, 2, base, 4],
    ];
    for (const [label, v, args, T, tiles, programs] of cases) {
      const rand = rng(label.length * 17 + T);
      const H = 40;
      await withPackedLayer(label, args, H, v, rand, async (layer, data) => {
        internal.setWebGPUDecodeTiles(tiles);
        const x = randn(rand, T * H);
        const input = tf.tensor2d(x, [T, H]);
        const dispatched = internal.decodeDispatchCount();
        const out = layer.apply(input) as tf.Tensor;
        expect(internal.decodeDispatchCount() - dispatched).withContext(`${label}: programs`).toBe(programs);
        const got = await out.data();
        tf.dispose([input, out]);
        expectReference(`down by expert, ${label}`, got, referenceOutput(layer.options, data, x, T, H));
      });
    }
  }, SLOW_MS);

  it('the router\'s rows of x staged (routerStageX): the same output bits as without, and the float64 reference',
     async () => {
       // Staging changes where x is read from, not the products or their order: the layer's output is bitwise the
       // unstaged one. Cases: the shared gate's splits beside the router's, token groups with a partial last group
       // (5 tokens in 2), row steps unrolled past each split's end (H = 40: 3 splits of 14 rows, 8 lanes).
       const cases: Array<[string, LayerFormatVariant, FusedMoEArgs, number, internal.DecodeTilesOverride]> = [
         ['int4 g32, unit codes, row cases, gated shared expert, 2 token groups, unrolled by 4',
          {label: 'int4 g32', format: 'int4'},
          {numExperts: 6, topK: 2, moeIntermediateSize: 32, sharedExpertIntermediateSize: 8, sharedExpertGate: true}, 5,
          {upNv: 16, upKs: 16, downNv: 8, downKs: 32, upRows: 2, int4Unit: 'half', decodeOnce: true, upRowCases: true,
           routerTokenGroups: 2, routerUnroll: 4}],
         ['float16, 4 programs, 16-token reductions', {label: 'float16', format: 'float16'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 3,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, routerReduceRows: 16}],
         ['int8 folded at T = 1, unrolled by 8', {label: 'int8', format: 'int8'},
          {numExperts: 5, topK: 2, moeIntermediateSize: 36}, 1,
          {upNv: 8, upKs: 32, downNv: 4, downKs: 64, fold: true, routerUnroll: 8}],
       ];
       for (const [label, v, args, T, tiles] of cases) {
         const rand = rng(label.length * 7 + T);
         const H = 40;
         await withPackedLayer(label, args, H, v, rand, async (layer, data) => {
           const x = randn(rand, T * H);
           const run = async (t: internal.DecodeTilesOverride) => {
             internal.setWebGPUDecodeTiles(t);
             const input = tf.tensor2d(x, [T, H]);
             const dispatched = internal.decodeDispatchCount();
             const out = layer.apply(input) as tf.Tensor;
             expect(internal.decodeDispatchCount() - dispatched).withContext(label).toBe(tiles.fold ? 3 : 4);
             const got = await out.data();
             tf.dispose([input, out]);
             return got;
           };
           const plain = await run(tiles);
           const staged = await run({...tiles, routerStageX: true});
           expect(Array.from(staged)).withContext(`${label}: staged vs not`).toEqual(Array.from(plain));
           expectReference(`router staged, ${label}`, staged, referenceOutput(layer.options, data, x, T, H));
         });
       }
     }, SLOW_MS);
});

/**
 * A packed layer for `body`; after it (passed or thrown) the tuned tiles are back and the layer's disposal frees
 * every tensor it made.
 */
async function withPackedLayer(label: string, args: FusedMoEArgs, H: number, v: LayerFormatVariant, rand: () => number,
                               body: (layer: Awaited<ReturnType<typeof packedLayer>>['layer'],
                                      data: Awaited<ReturnType<typeof packedLayer>>['data']) => Promise<void>) {
  const baseline = tf.memory().numTensors;
  const {layer, data} = await packedLayer(args, H, v, rand);
  try {
    await body(layer, data);
  } finally {
    internal.setWebGPUDecodeTiles(null);
    layer.dispose();
  }
  expect(tf.memory().numTensors).withContext(label).toBe(baseline);
}

/** The output against the float64 reference, recorded under `what`. */
function expectReference(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const err = relError(got, want);
  recordError(`webgpu decode packed: ${what}`, err);
  expect(err).withContext(what).toBeLessThan(TOLERANCE);
}
