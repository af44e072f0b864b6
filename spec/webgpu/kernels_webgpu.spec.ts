// Every webgpu kernel against the float64 reference on random small shapes and the doc's edge cases (SwiftShader
// in CI: shapes stay small). Each case also checks that no tensor leaks.
import * as tf from '@tensorflow/tfjs-core';
import * as moe from 'tfjs-moe';

import {randInt, randn, readAll, recordError, relError, rng} from '../helpers/util.js';
import {refBatchedGemm, refGetMoeScores, refMoeCombine, refMoePermute, refMoeTopkSelect, refOffsetsFromCounts, refSwigluScale} from '../reference/moe_reference.js';
import {describeWebGPU} from './webgpu_env.js';

const ROUTING_TOL = 1e-5;
const GEMM_TOL = 1e-4;
/** SwiftShader compiles every new pipeline on the CPU, seconds each on a busy 2-core machine. */
const SLOW = 300_000;

/** Ids equal up to float32-vs-float64 near-ties: a differing slot must hold an equally ranked value. */
function expectIdsUpToTies(got: ArrayLike<number>, want: ArrayLike<number>, ranked: (row: number, id: number) => number,
                           k: number, context: string): void {
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    const row = Math.floor(i / k);
    const a = ranked(row, got[i]), b = ranked(row, want[i]);
    const tie = (Number.isNaN(a) && Number.isNaN(b)) || Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
    expect(tie).withContext(`${context}: slot ${i} id ${got[i]} vs reference ${want[i]} (${a} vs ${b})`).toBeTrue();
  }
}

function countsToOffsets(counts: number[], alignment: number): number[] {
  const off = [0];
  for (const c of counts) off.push(off[off.length - 1] + Math.ceil(c / alignment) * alignment);
  return off;
}

describeWebGPU('webgpu kernels', () => {
  it('is running on the webgpu backend with our kernels registered', () => {
    expect(tf.getBackend()).toBe('webgpu');
    expect(moe.hasMoeKernels(moe.ALL_MOE_KERNELS)).toBeTrue();
  }, SLOW);

  it('moeTopkSelect matches the reference on random shapes (bias, norm, E past one thread per expert)', async () => {
    const rand = rng(101);
    for (let trial = 0; trial < 12; trial++) {
      const T = randInt(rand, 1, 9);
      const E = trial === 0 ? 130 : trial === 1 ? 64 : randInt(rand, 1, 40);
      const k = randInt(rand, 1, Math.min(E, 8));
      const withBias = rand() < 0.5, norm = rand() < 0.5;
      const logits = randn(rand, T * E, 3);
      const bias = withBias ? randn(rand, E, 0.05) : null;
      const ctx = `seed 101 trial ${trial} T=${T} E=${E} k=${k} bias=${withBias} norm=${norm}`;
      const before = tf.memory().numTensors;
      const lt = tf.tensor2d(logits, [T, E]);
      const bt = bias ? tf.tensor1d(bias) : null;
      const {topkIds, topkWeights} = moe.moeTopkSelect(lt, bt, k, norm);
      const [ids, weights] = await readAll(topkIds, topkWeights, lt, ...(bt ? [bt] : []));
      expect(tf.memory().numTensors).withContext(ctx).toBe(before);
      const ref = refMoeTopkSelect(logits, T, E, bias, k, norm);
      expectIdsUpToTies(ids, ref.ids, (t, e) => ref.selectionScores[t * E + e], k, ctx);
      // Expected weights from the ids the kernel chose (identical unless a near-tie was broken the other way).
      const want = new Float64Array(T * k);
      for (let t = 0; t < T; t++) {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += ref.probs[t * E + ids[t * k + j]];
        for (let j = 0; j < k; j++) want[t * k + j] = ref.probs[t * E + ids[t * k + j]] / (norm ? sum : 1);
      }
      const err = relError(weights, want);
      recordError('webgpu moeTopkSelect weights', err);
      expect(err).withContext(ctx).toBeLessThan(ROUTING_TOL);
    }
  }, SLOW);

  it('moeTopkSelect edge cases: ties go to the lower expert, a NaN row picks 0..k-1 with NaN weights', async () => {
    const T = 3, E = 6, k = 3;
    const logits = new Float32Array([
      1, 1, 1, 1, 1, 1,                 // all tied
      0, 2, NaN, 2, 5, 2,               // NaN: the whole row's probabilities are NaN
      -Infinity, 0, -Infinity, 0, 0, 1  // -inf experts never beat finite ones
    ]);
    const lt = tf.tensor2d(logits, [T, E]);
    const {topkIds, topkWeights} = moe.moeTopkSelect(lt, null, k, true);
    const [ids, weights] = await readAll(topkIds, topkWeights, lt);
    const ref = refMoeTopkSelect(logits, T, E, null, k, true);
    expect(Array.from(ids)).toEqual(Array.from(ref.ids));
    expect(Array.from(ids)).toEqual([0, 1, 2, 0, 1, 2, 5, 1, 3]);
    expect(weights.slice(3, 6).every(Number.isNaN)).toBeTrue();
    expect(relError(weights.slice(0, 3), ref.weights.slice(0, 3))).toBeLessThan(ROUTING_TOL);
    expect(relError(weights.slice(6), ref.weights.slice(6))).toBeLessThan(ROUTING_TOL);
  }, SLOW);

  it('getMoeScores matches the reference on random group layouts', async () => {
    const rand = rng(202);
    for (let trial = 0; trial < 12; trial++) {
      const G = [1, 2, 4, 8][randInt(rand, 0, 3)];
      const groupSize = [1, 2, 3, 8, 17][randInt(rand, 0, 4)];
      const E = G * groupSize;
      const Gk = randInt(rand, 1, G);
      const k = randInt(rand, 1, Math.min(E, Gk * groupSize, 8));
      const T = randInt(rand, 1, 7);
      const rsf = 0.5 + 2 * rand();
      const withBias = rand() < 0.5, renorm = rand() < 0.7;
      const logits = randn(rand, T * E, 2);
      const bias = withBias ? randn(rand, E, 0.1) : null;
      const ctx = `seed 202 trial ${trial} T=${T} E=${E} G=${G} Gk=${Gk} k=${k} bias=${withBias} renorm=${renorm}`;
      const before = tf.memory().numTensors;
      const lt = tf.tensor2d(logits, [T, E]);
      const bt = bias ? tf.tensor1d(bias) : null;
      const out = moe.getMoeScores(lt, G, Gk, k, rsf, bt, renorm);
      const [scores, weights, ids] = await readAll(out.scores, out.topkWeights, out.topkIds, lt, ...(bt ? [bt] : []));
      expect(tf.memory().numTensors).withContext(ctx).toBe(before);
      const ref = refGetMoeScores(logits, T, E, G, Gk, k, rsf, bias, renorm);
      const scoreErr = relError(scores, ref.scores);
      recordError('webgpu getMoeScores scores', scoreErr);
      expect(scoreErr).withContext(ctx).toBeLessThan(ROUTING_TOL);
      // Near-ties between groups change the candidates; compare ids only where no group score nearly ties.
      expectIdsUpToTies(ids, ref.ids, (t, e) => ref.biased[t * E + e], k, ctx);
      const want = new Float64Array(T * k);
      for (let t = 0; t < T; t++) {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += ref.scores[t * E + ids[t * k + j]];
        for (let j = 0; j < k; j++) {
          want[t * k + j] = ref.scores[t * E + ids[t * k + j]] / (renorm ? sum + 1e-20 : 1) * rsf;
        }
      }
      const err = relError(weights, want);
      recordError('webgpu getMoeScores weights', err);
      expect(err).withContext(ctx).toBeLessThan(ROUTING_TOL);
    }
  }, SLOW);

  it('getMoeScores edge cases: NaN rows fall back to ids 0..k-1 with weights 1/k; group size 1', async () => {
    const T = 2, E = 8, G = 8, Gk = 3, k = 3;
    const logits = new Float32Array([NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN, 0.5, -1, 2, 2, 0, 3, -2, 1]);
    const lt = tf.tensor2d(logits, [T, E]);
    const out = moe.getMoeScores(lt, G, Gk, k, 2.5, null, true);
    const [, weights, ids] = await readAll(out.scores, out.topkWeights, out.topkIds, lt);
    const ref = refGetMoeScores(logits, T, E, G, Gk, k, 2.5, null, true);
    expect(Array.from(ids)).toEqual(Array.from(ref.ids));
    expect(Array.from(ids.slice(0, 3))).toEqual([0, 1, 2]);
    expect(relError(weights, ref.weights)).toBeLessThan(ROUTING_TOL);
  }, SLOW);

  it('moePermute matches the reference exactly (alignment, duplicate ids, empty experts)', async () => {
    const rand = rng(303);
    for (let trial = 0; trial < 12; trial++) {
      const T = trial === 0 ? 1 : randInt(rand, 1, 40);
      const k = randInt(rand, 1, 4);
      const E = randInt(rand, 1, 12);
      const D = [1, 3, 4, 8, 10][randInt(rand, 0, 4)];
      const alignment = [1, 1, 2, 4, 16][randInt(rand, 0, 4)];
      const ids = new Int32Array(T * k).map(() => randInt(rand, 0, E - 1));
      const x = randn(rand, T * D);
      const ctx = `seed 303 trial ${trial} T=${T} k=${k} E=${E} D=${D} alignment=${alignment}`;
      const before = tf.memory().numTensors;
      const xt = tf.tensor2d(x, [T, D]);
      const it = tf.tensor2d(ids, [T, k], 'int32');
      const out = moe.moePermute(xt, it, E, alignment);
      const [px, counts, offsets, rowMap] =
          await readAll(out.permutedX, out.tokensPerExpert, out.expertOffsets, out.rowMap, xt, it);
      expect(tf.memory().numTensors).withContext(ctx).toBe(before);
      const ref = refMoePermute(x, T, D, ids, k, E, alignment);
      expect(Array.from(counts)).withContext(ctx).toEqual(Array.from(ref.tokensPerExpert));
      expect(Array.from(offsets)).withContext(ctx).toEqual(Array.from(ref.expertOffsets));
      expect(Array.from(rowMap)).withContext(ctx).toEqual(Array.from(ref.rowMap));
      expect(px.length).withContext(ctx).toBe(ref.permutedX.length);
      expect(relError(px, ref.permutedX)).withContext(ctx).toBe(0);
    }
  }, SLOW);

  it('moePermute on more rows than one scan chunk (T*k > 2048) stays a stable sort', async () => {
    const rand = rng(304);
    const T = 700, k = 4, E = 5, D = 4;
    const ids = new Int32Array(T * k).map(() => randInt(rand, 0, E - 1));
    const x = randn(rand, T * D);
    const xt = tf.tensor2d(x, [T, D]);
    const it = tf.tensor2d(ids, [T, k], 'int32');
    const out = moe.moePermute(xt, it, E, 8);
    const [px, , offsets, rowMap] =
        await readAll(out.permutedX, out.tokensPerExpert, out.expertOffsets, out.rowMap, xt, it);
    const ref = refMoePermute(x, T, D, ids, k, E, 8);
    expect(Array.from(offsets)).toEqual(Array.from(ref.expertOffsets));
    expect(Array.from(rowMap)).toEqual(Array.from(ref.rowMap));
    expect(relError(px, ref.permutedX)).toBe(0);
  }, SLOW);

  it('batchedGemm matches the reference on random segments, every program variant', async () => {
    const rand = rng(404);
    // Shapes chosen so the static choice lands on each program: rows per expert decides stream vs tile sizes,
    // N or K not a multiple of 4 the scalar tiles, transposeRhs the tiled path.
    const cases: Array<{R: number, E: number, K: number, N: number}> = [
      {R: 8, E: 8, K: 16, N: 12},     // stream8
      {R: 40, E: 3, K: 20, N: 8},     // r32x128
      {R: 90, E: 3, K: 12, N: 16},    // r32x128
      {R: 200, E: 2, K: 8, N: 20},    // r64x256
      {R: 300, E: 1, K: 36, N: 12},   // r64x256, one expert
      {R: 13, E: 4, K: 7, N: 5},      // scalar
      {R: 30, E: 5, K: 64, N: 3},     // scalar, K past one tile
      {R: 6, E: 7, K: 9, N: 132},     // scalar, N past one tile
      {R: 17, E: 3, K: 4, N: 140},    // stream, N past one column tile
    ];
    for (const [ci, c] of cases.entries()) {
      for (const transposeRhs of [false, true]) {
        const withBias = rand() < 0.6;
        const asCounts = !transposeRhs && ci % 2 === 1;
        const alignment = asCounts ? 1 : [1, 2, 4][randInt(rand, 0, 2)];
        // Random counts that fit in R with their padding; some experts empty; leftover rows in no segment.
        const counts = new Array<number>(c.E).fill(0);
        const budget = Math.floor(c.R * (asCounts ? 1 : 0.8));
        for (let i = 0; i < budget; i++) {
          const e = randInt(rand, 0, c.E - 1);
          const trial = counts.slice();
          trial[e]++;
          if (countsToOffsets(trial, alignment)[c.E] <= c.R) counts[e]++;
        }
        if (c.E > 2) counts[1] = 0;
        const offsets = countsToOffsets(counts, alignment);
        const lhs = randn(rand, c.R * c.K);
        const rhs = randn(rand, c.E * c.K * c.N);
        const bias = withBias ? randn(rand, c.E * c.N) : null;
        const ctx = `case ${ci} ${JSON.stringify(c)} transposeRhs=${transposeRhs} bias=${withBias} counts=${asCounts}`;
        const before = tf.memory().numTensors;
        const lt = tf.tensor2d(lhs, [c.R, c.K]);
        const rt = transposeRhs ? tf.tensor3d(rhs, [c.E, c.N, c.K]) : tf.tensor3d(rhs, [c.E, c.K, c.N]);
        const st = tf.tensor1d(asCounts ? counts : offsets, 'int32');
        const bt = bias ? tf.tensor2d(bias, [c.E, c.N]) : null;
        const out = moe.batchedGemm(lt, rt, st, {transposeRhs, bias: bt});
        const [got] = await readAll(out, lt, rt, st, ...(bt ? [bt] : []));
        expect(tf.memory().numTensors).withContext(ctx).toBe(before);
        const want = refBatchedGemm(lhs, c.R, c.K, rhs, c.E, c.N, asCounts ? refOffsetsFromCounts(counts) : offsets,
                                    transposeRhs, bias);
        const err = relError(got, want);
        recordError('webgpu batchedGemm', err);
        expect(err).withContext(ctx).toBeLessThan(GEMM_TOL);
        // Rows in no segment are exactly zero.
        const used = asCounts ? counts.reduce((a, b) => a + b, 0) : offsets[c.E];
        expect(got.slice(used * c.N).every(v => v === 0)).withContext(ctx + ' tail rows').toBeTrue();
      }
    }
  }, SLOW);

  it('batchedGemm of one expert (the router) takes the split-K program: chunks, edges, clamped segments', async () => {
    const rand = rng(405);
    // K past several chunks, rows past one 32-row tile, N past one 128-column tile and N below it; offsets with
    // rows outside the segment, out of range (clamped), and counts.
    const cases: Array<{R: number, K: number, N: number, seg: number[], counts: boolean}> = [
      {R: 70, K: 260, N: 136, seg: [5, 61], counts: false},
      {R: 9, K: 8, N: 20, seg: [-3, 50], counts: false},
      {R: 33, K: 132, N: 8, seg: [40], counts: true},
    ];
    // The program is off by default (MOE_WEBGPU_ROUTER_SPLIT_K 0); on here at its measured setting.
    const splitK = tf.env().get('MOE_WEBGPU_ROUTER_SPLIT_K');
    tf.env().set('MOE_WEBGPU_ROUTER_SPLIT_K', 264);
    try {
      for (const c of cases) {
        const lhs = randn(rand, c.R * c.K), rhs = randn(rand, c.K * c.N);
        const before = tf.memory().numTensors;
        const lt = tf.tensor2d(lhs, [c.R, c.K]), rt = tf.tensor3d(rhs, [1, c.K, c.N]);
        const st = tf.tensor1d(c.seg, 'int32');
        const out = moe.batchedGemm(lt, rt, st);
        const [got] = await readAll(out, lt, rt, st);
        expect(tf.memory().numTensors).toBe(before);
        const lo = c.counts ? 0 : Math.min(Math.max(c.seg[0], 0), c.R);
        const hi = c.counts ? Math.min(Math.max(c.seg[0], 0), c.R) : Math.max(lo, Math.min(Math.max(c.seg[1], 0), c.R));
        const want = refBatchedGemm(lhs, c.R, c.K, rhs, 1, c.N, [lo, hi], false, null);
        const ctx = JSON.stringify(c);
        expect(relError(got, want)).withContext(ctx).toBeLessThan(GEMM_TOL);
        // Rows outside the segment are exactly zero.
        expect(got.slice(0, lo * c.N).every(v => v === 0) && got.slice(hi * c.N).every(v => v === 0))
            .withContext(ctx).toBeTrue();
      }
    } finally {
      tf.env().set('MOE_WEBGPU_ROUTER_SPLIT_K', splitK);
    }
  }, SLOW);

  it('fusedSwigluScale matches the reference (vec4 and scalar widths, with and without scale)', async () => {
    const rand = rng(505);
    for (const [R, I] of [[1, 1], [5, 3], [7, 8], [33, 12], [4, 130]]) {
      for (const withScale of [false, true]) {
        const x = randn(rand, R * 2 * I, 4);
        const scale = withScale ? randn(rand, R) : null;
        const before = tf.memory().numTensors;
        const xt = tf.tensor2d(x, [R, 2 * I]);
        const st = scale ? tf.tensor1d(scale) : null;
        const [got] = await readAll(moe.fusedSwigluScale(xt, st), xt, ...(st ? [st] : []));
        expect(tf.memory().numTensors).toBe(before);
        const err = relError(got, refSwigluScale(x, R, I, scale));
        recordError('webgpu fusedSwigluScale', err);
        expect(err).withContext(`R=${R} I=${I} scale=${withScale}`).toBeLessThan(ROUTING_TOL);
      }
    }
  }, SLOW);

  it('moeCombine matches the reference (weightsApplied both ways, bias always weighted)', async () => {
    const rand = rng(606);
    for (let trial = 0; trial < 8; trial++) {
      const T = randInt(rand, 1, 12), k = randInt(rand, 1, 4), E = randInt(rand, 1, 6);
      const D = [1, 4, 6, 12][randInt(rand, 0, 3)];
      const alignment = [1, 4][randInt(rand, 0, 1)];
      const ids = new Int32Array(T * k).map(() => randInt(rand, 0, E - 1));
      const perm = refMoePermute(new Float32Array(T * D), T, D, ids, k, E, alignment);
      const y = randn(rand, perm.R * D);
      const w = new Float32Array(T * k).map(() => rand());
      const bias = trial % 2 === 0 ? randn(rand, E * D) : null;
      const weightsApplied = trial % 4 >= 2;
      const ctx = `seed 606 trial ${trial} T=${T} k=${k} E=${E} D=${D} bias=${bias != null} applied=${weightsApplied}`;
      const before = tf.memory().numTensors;
      const inputs = [tf.tensor2d(y, [perm.R, D]), tf.tensor2d(perm.rowMap, [T, k], 'int32'), tf.tensor2d(w, [T, k]),
                      tf.tensor2d(ids, [T, k], 'int32')] as const;
      const bt = bias ? tf.tensor2d(bias, [E, D]) : null;
      const out = moe.moeCombine(inputs[0], inputs[1], inputs[2], inputs[3], {downProjBias: bt, weightsApplied});
      const [got] = await readAll(out, ...inputs, ...(bt ? [bt] : []));
      expect(tf.memory().numTensors).withContext(ctx).toBe(before);
      const err = relError(got, refMoeCombine(y, perm.R, D, perm.rowMap, w, ids, T, k, bias, weightsApplied));
      recordError('webgpu moeCombine', err);
      expect(err).withContext(ctx).toBeLessThan(ROUTING_TOL);
    }
  }, SLOW);
});
