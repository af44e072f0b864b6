/**
 * FusedMoE's load-balancing options: validation, serialization, the recorded loads and the auxiliary loss
 * against float64 values computed here from the reference router, the aux-free bias step, and leak checks.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {FusedMoE, FusedMoEArgs, MoeForwardContext, registerMoeLayerExecutor} from 'tfjs-moe';
import {registerCudaLayerExecutor} from 'tfjs-moe/internal';

import {expectNoLeak, randn, recordError, relError, rng} from '../helpers/util.js';
import {refGetMoeScores, refMoeTopkSelect} from '../reference/moe_reference.js';
import {randomLayer, WeightData} from '../layers/layer_util.js';

const T = 12, H = 6;

/** Reference loads and HF's auxiliary loss (coef * E * sum_e n_e / T * P_e) for x [T,H], in float64. */
function referenceBalance(args: FusedMoEArgs, d: WeightData, x: Float32Array, coef: number):
    {loads: number[], aux: number} {
  const E = args.numExperts, k = args.topK;
  const logits = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let acc = args.routerBias ? d.gate_bias[e] : 0;
      for (let h = 0; h < H; h++) acc += x[t * H + h] * d.gate_weight[h * E + e];
      logits[t * E + e] = acc;
    }
  }
  const bias = args.useCorrectionBias ? d.gate_correction_bias : null;
  const noaux = args.topkMethod === 'noaux_tc';
  const ids = noaux ?
      refGetMoeScores(logits, T, E, args.nGroup ?? 1, args.topkGroup ?? 1, k, args.routedScalingFactor ?? 1, bias,
          args.renormalize ?? true).ids :
      refMoeTopkSelect(logits, T, E, bias, k, args.renormalize ?? true).ids;
  const loads = new Array(E).fill(0);
  for (const e of ids) loads[e]++;
  const meanP = new Array(E).fill(0);
  for (let t = 0; t < T; t++) {
    const row = Array.from(logits.subarray(t * E, (t + 1) * E));
    let p: number[];
    if (noaux) {
      const s = row.map(v => 1 / (1 + Math.exp(-v)));
      const sum = s.reduce((a, b) => a + b, 0);
      p = s.map(v => v / sum);
    } else {
      const max = Math.max(...row);
      const ex = row.map(v => Math.exp(v - max));
      const sum = ex.reduce((a, b) => a + b, 0);
      p = ex.map(v => v / sum);
    }
    for (let e = 0; e < E; e++) meanP[e] += p[e] / T;
  }
  let aux = 0;
  for (let e = 0; e < E; e++) aux += loads[e] / T * meanP[e];
  return {loads, aux: coef * E * aux};
}

describe('FusedMoE load balancing', () => {
  it('rejects bad options naming them, before any tensor exists', () => {
    const base = {numExperts: 4, topK: 2, moeIntermediateSize: 3};
    const before = tf.memory().numTensors;
    expect(() => new FusedMoE({...base, auxLossCoef: -1})).toThrowError(/option 'auxLossCoef' must be a finite number >= 0, got -1/);
    expect(() => new FusedMoE({...base, auxLossCoef: NaN})).toThrowError(/option 'auxLossCoef'/);
    expect(() => new FusedMoE({...base, biasUpdateRate: 0.1}))
        .toThrowError(/option 'biasUpdateRate' must be 0 unless useCorrectionBias is true/);
    expect(() => new FusedMoE({...base, recordExpertLoad: 'yes' as unknown as boolean}))
        .toThrowError(/option 'recordExpertLoad' must be a boolean/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps its options through getConfig / fromConfig', () => {
    const layer = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, useCorrectionBias: true,
      auxLossCoef: 0.02, biasUpdateRate: 0.001});
    const config = layer.getConfig();
    expect(config.auxLossCoef).toBe(0.02);
    expect(config.biasUpdateRate).toBe(0.001);
    expect(config.recordExpertLoad).toBe(true);
    const copy = tf.serialization.SerializationMap.getMap().classNameMap.FusedMoE;
    const again = copy[1](copy[0], config) as FusedMoE;
    expect(again.getConfig()).toEqual(config);
    expect(new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3}).getConfig().recordExpertLoad).toBe(false);
  });

  const CASES: Array<{label: string, args: FusedMoEArgs}> = [
    {label: 'greedy (softmax) routing', args: {numExperts: 5, topK: 2, moeIntermediateSize: 3}},
    {label: 'greedy with a correction bias', args: {numExperts: 4, topK: 1, moeIntermediateSize: 2, renormalize: false,
      useCorrectionBias: true}},
    {label: 'noaux_tc routing', args: {numExperts: 6, topK: 2, moeIntermediateSize: 2, topkMethod: 'noaux_tc', nGroup: 3,
      topkGroup: 2, routedScalingFactor: 2, useCorrectionBias: true}},
    {label: 'greedy with a router bias (gpt-oss)', args: {numExperts: 5, topK: 2, moeIntermediateSize: 3,
      routerBias: true, activation: 'clamped_swiglu'}},
  ];
  CASES.forEach(({label, args}, i) => {
    it(`${label}: loads of the last call and the auxiliary loss match float64 values`, async () => {
      const rand = rng(4200 + i);
      const coef = 0.05;
      await expectNoLeak(async () => {
        const {layer, data} = randomLayer({...args, auxLossCoef: coef}, H, rand);
        const x = randn(rand, T * H);
        const ref = referenceBalance(args, data, x, coef);
        const xT = tf.tensor2d(x, [T, H]);
        // Inside a scope, as model.fit / optimizer.minimize run a training call.
        const aux = tf.tidy(() => {
          (layer.apply(xT, {training: true}) as tf.Tensor).dispose();
          const value = layer.auxLoss();
          expect(value).not.toBeNull();
          return value!.clone();
        });
        expect(layer.auxLoss()).withContext('the aux loss dies with its scope').toBeNull();
        const got = (await aux.data())[0];
        aux.dispose();
        const err = relError([got], [ref.aux]);
        recordError('load balancing aux loss', err);
        expect(err).withContext(`aux loss ${got} vs ${ref.aux}`).toBeLessThan(1e-5);
        expect(Array.from(await layer.expertLoad()!.data())).toEqual(ref.loads);
        // A call outside training records loads but makes no aux loss.
        tf.tidy(() => {
          (layer.apply(xT.slice([0, 0], [3, H])) as tf.Tensor).dispose();
          expect(layer.auxLoss()).toBeNull();
        });
        expect(Array.from(await layer.expertLoad()!.data()).reduce((a, b) => a + b, 0)).toBe(3 * args.topK);
        xT.dispose();
        layer.dispose();
        expect(layer.expertLoad()).withContext('loads released with the layer').toBeNull();
      });
    });
  });

  it('an executor that returns no routing: the layer routes again, with gate_bias when routerBias', async () => {
    const args: FusedMoEArgs = {numExperts: 5, topK: 2, moeIntermediateSize: 3, routerBias: true};
    registerMoeLayerExecutor('cuda', {availability: () => ({available: true}), forward: x => tf.zerosLike(x)});
    try {
      const rand = rng(4400);
      const coef = 0.05;
      await expectNoLeak(async () => {
        const {layer, data} = randomLayer({...args, auxLossCoef: coef, backend: 'cuda'}, H, rand);
        const x = randn(rand, T * H);
        const ref = referenceBalance(args, data, x, coef);
        const xT = tf.tensor2d(x, [T, H]);
        const aux = tf.tidy(() => {
          (layer.apply(xT, {training: true}) as tf.Tensor).dispose();
          return layer.auxLoss()!.clone();
        });
        expect(relError([(await aux.data())[0]], [ref.aux])).toBeLessThan(1e-5);
        aux.dispose();
        expect(Array.from(await layer.expertLoad()!.data())).toEqual(ref.loads);
        xT.dispose();
        layer.dispose();
      });
    } finally {
      registerCudaLayerExecutor();
    }
  });

  it('an executor that returns its routing ids alone: loads from those ids, aux loss with logits computed once', async () => {
    // A stand-in for the native 'cuda' executor (registered in its place, restored after): output zeros, ids from
    // the float64 routing, no logits.
    const args: FusedMoEArgs = {numExperts: 5, topK: 2, moeIntermediateSize: 3};
    const contexts: Array<MoeForwardContext | undefined> = [];
    let returnedIds: Int32Array | null = null;
    registerMoeLayerExecutor('cuda', {
      availability: () => ({available: true}),
      forward(x, weights, options, context) {
        contexts.push(context);
        const [rows, hidden] = x.shape;
        const xs = x.dataSync(), g = weights.gate_weight.dataSync();
        const E = options.numExperts;
        const logits = new Float64Array(rows * E);
        for (let t = 0; t < rows; t++) {
          for (let e = 0; e < E; e++) {
            let acc = 0;
            for (let h = 0; h < hidden; h++) acc += xs[t * hidden + h] * g[h * E + e];
            logits[t * E + e] = acc;
          }
        }
        returnedIds = refMoeTopkSelect(logits, rows, E, null, options.topK, true).ids;
        return {output: tf.zerosLike(x), topkIds: tf.tensor2d(returnedIds, [rows, options.topK], 'int32')};
      },
    });
    try {
      const rand = rng(4300);
      const coef = 0.05;
      await expectNoLeak(async () => {
        const {layer, data} = randomLayer({...args, auxLossCoef: coef, backend: 'cuda'}, H, rand);
        const x = randn(rand, T * H);
        const ref = referenceBalance(args, data, x, coef);
        const xT = tf.tensor2d(x, [T, H]);
        const aux = tf.tidy(() => {
          (layer.apply(xT, {training: true}) as tf.Tensor).dispose();
          return layer.auxLoss()!.clone();
        });
        expect(contexts[0]?.needsRouting).withContext('the layer asks for the routing').toBe(true);
        expect(relError([(await aux.data())[0]], [ref.aux])).toBeLessThan(1e-5);
        aux.dispose();
        const loads = Array.from(await layer.expertLoad()!.data());
        expect(loads).toEqual(ref.loads);
        // The loads are the executor's ids, counted (not a second routing).
        const counted = new Array(args.numExperts).fill(0);
        for (const e of returnedIds!) counted[e]++;
        expect(loads).toEqual(counted);
        xT.dispose();
        layer.dispose();
      });
      // Without balancing the layer does not ask for the routing.
      const {layer} = randomLayer({...args, backend: 'cuda'}, H, rng(4301));
      const x = tf.ones([2, H]);
      tf.dispose(layer.apply(x) as tf.Tensor);
      expect(contexts[contexts.length - 1]?.needsRouting).toBe(false);
      x.dispose();
      layer.dispose();
    } finally {
      registerCudaLayerExecutor();
    }
  });

  it('aux-free: a training call moves gate_correction_bias by rate * sign(mean load - load); manual step too',
      async () => {
    const rand = rng(77);
    const args: FusedMoEArgs = {numExperts: 4, topK: 1, moeIntermediateSize: 2, useCorrectionBias: true,
      biasUpdateRate: 0.125};
    await expectNoLeak(async () => {
      const {layer, data} = randomLayer(args, H, rand);
      const x = randn(rand, T * H);
      const {loads} = referenceBalance(args, data, x, 0);
      const mean = loads.reduce((a, b) => a + b, 0) / loads.length;
      const expected = data.gate_correction_bias.map((b, e) => b + 0.125 * Math.sign(mean - loads[e]));
      const xT = tf.tensor2d(x, [T, H]);
      tf.tidy(() => (layer.apply(xT) as tf.Tensor).dispose());
      expect(Array.from(await layer.namedWeights().gate_correction_bias!.data()))
          .withContext('no step outside training').toEqual(Array.from(data.gate_correction_bias));
      tf.tidy(() => (layer.apply(xT, {training: true}) as tf.Tensor).dispose());
      const after = await layer.namedWeights().gate_correction_bias!.data();
      expect(relError(after, expected)).toBeLessThan(1e-6);
      // The manual step uses the loads recorded by the last call (made with the old bias).
      expect(layer.updateCorrectionBias(0.5)).toBeTrue();
      const manual = await layer.namedWeights().gate_correction_bias!.data();
      const lastLoads = Array.from(await layer.expertLoad()!.data());
      const lastMean = lastLoads.reduce((a, b) => a + b, 0) / lastLoads.length;
      expect(relError(manual, Array.from(after, (b, e) => b + 0.5 * Math.sign(lastMean - lastLoads[e]))))
          .toBeLessThan(1e-6);
      expect(() => layer.updateCorrectionBias(NaN)).toThrowError(/argument 'rate' must be a finite number/);
      xT.dispose();
      layer.dispose();
    });
    const plain = new FusedMoE({numExperts: 4, topK: 1, moeIntermediateSize: 2}).buildFor(H);
    expect(() => plain.updateCorrectionBias(0.1)).toThrowError(/needs useCorrectionBias/);
    plain.dispose();
  });

  it('a layer without balancing options keeps nothing between calls', async () => {
    const rand = rng(5);
    await expectNoLeak(async () => {
      const {layer} = randomLayer({numExperts: 3, topK: 1, moeIntermediateSize: 2}, H, rand);
      const xT = tf.tensor2d(randn(rand, T * H), [T, H]);
      const before = tf.memory().numTensors;
      (layer.apply(xT, {training: true}) as tf.Tensor).dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(layer.expertLoad()).toBeNull();
      expect(layer.losses.length).toBe(0);
      xT.dispose();
      layer.dispose();
    });
  });

  it('model.fit with the auxiliary loss: the reported loss includes it', async () => {
    const rand = rng(11);
    await expectNoLeak(async () => {
      const layer = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 2, auxLossCoef: 100, backend: 'cpu'});
      const input = tfl.input({shape: [H]});
      const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
      const optimizer = tf.train.sgd(0);  // no step: the loss is the same function at both ends
      model.compile({optimizer, loss: 'meanSquaredError'});
      const x = tf.tensor2d(randn(rand, T * H), [T, H]), y = tf.zeros([T, H]);
      const history = await model.fit(x, y, {epochs: 1, batchSize: T, verbose: 0});
      const taskLoss = model.evaluate(x, y) as tf.Scalar;
      const task = (await taskLoss.data())[0];
      taskLoss.dispose();
      // A fresh layer routes nearly uniformly (gate ~ N(0, 0.02)): aux ~ coef * k = 200, far above the task loss.
      expect(history.history.loss[0] as number).toBeGreaterThan(task + 50);
      tf.dispose([x, y]);
      optimizer.dispose();
      model.dispose();
    });
  });
});
