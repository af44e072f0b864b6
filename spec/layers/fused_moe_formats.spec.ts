// FusedMoE with packed expert weights (docs/formats.md): every format on the cpu kernels and the composite path
// against the float64 reference evaluated on the dequantized weights; setNamedWeights / expertWeights /
// quantizeExperts; save/load bit for bit; training leaves packed weights alone and says so once; no leaks.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as moe from 'tfjs-moe';
import {FusedMoE, FusedMoEArgs} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {LayerFormatVariant, LAYER_FORMAT_VARIANTS, layerFormatArgs} from './layer_formats_cases.js';
import {applyAndRead, dequantizedWeights, randn, randomLayer, referenceOutput} from './layer_util.js';

const H = 40;
const BASE: FusedMoEArgs = {numExperts: 4, topK: 2, moeIntermediateSize: 24, withBias: true, sharedExpertIntermediateSize: 6};

async function checkFormat(v: LayerFormatVariant, layerBackend: 'cpu' | 'composite', seed: number): Promise<void> {
  const rand = rng(seed);
  const {layer: source, data} = randomLayer({...BASE, name: `src_${seed}`}, H, rand);
  const layer = new FusedMoE({...BASE, ...layerFormatArgs(v), backend: layerBackend, name: `q_${seed}`}).buildFor(H);
  const values: Record<string, tf.Tensor> = {};
  for (const [name, d] of Object.entries(data)) values[name] = tf.tensor(d, (source.namedWeights() as never)[name]['shape']);
  layer.setNamedWeights(values);
  // setNamedWeights quantizes exactly as quantizeExpertWeights does.
  const direct = moe.quantizeExpertWeights(values.up_gate_proj_weight as tf.Tensor3D, v.format,
      layer.expertWeights('up_gate_proj_weight').groupSize === 0 ? {} :
          {groupSize: layer.expertWeights('up_gate_proj_weight').groupSize, zeroPoint: v.zeroPoint});
  const stored = layer.expertWeights('up_gate_proj_weight');
  expect(stored.format).toBe(v.format);
  expect(Array.from(await stored.values.data())).withContext(`${v.label} codes`).toEqual(Array.from(await direct.values.data()));
  tf.dispose([...Object.values(values), direct as unknown as tf.TensorContainer]);
  source.dispose();

  const T = 7;
  const x = randn(rand, T * H, 1);
  const expected = referenceOutput(layer.options, await dequantizedWeights(layer), x, T, H);
  const got = await applyAndRead(layer, x, [T, H]);
  const err = relError(got, expected);
  recordError(`FusedMoE ${layerBackend} ${v.label}`, err);
  expect(err).withContext(`${layerBackend} ${v.label}`).toBeLessThan(1e-5);
  layer.dispose();
}

describe('FusedMoE expert weight formats (cpu)', () => {
  for (const layerBackend of ['cpu', 'composite'] as const) {
    it(`every format on ${layerBackend} matches the reference on the dequantized weights; no leaks`, async () => {
      let seed = layerBackend === 'cpu' ? 700 : 800;
      for (const v of LAYER_FORMAT_VARIANTS) await expectNoLeak(() => checkFormat(v, layerBackend, seed++));
    });
  }

  it('stores packed weights as non-trainable variables; float32 keeps its trainable expert weights', () => {
    const layer = new FusedMoE({...BASE, expertWeightFormat: 'int4', quantZeroPoint: true, name: 'packed_vars'}).buildFor(H);
    const names = (vs: tfl.LayerVariable[]) => vs.map(w => w.originalName.split('/').pop());
    expect(names(layer.nonTrainableWeights)).toEqual(jasmine.arrayContaining([
      'up_gate_proj_weight_values', 'up_gate_proj_weight_scales', 'up_gate_proj_weight_zero_points',
      'down_proj_weight_values', 'down_proj_weight_scales', 'down_proj_weight_zero_points']));
    expect(names(layer.trainableWeights)).not.toContain('up_gate_proj_weight');
    expect(names(layer.trainableWeights)).toContain('up_gate_proj_bias');
    const q = layer.expertWeights('down_proj_weight');
    expect(q.shape).toEqual([4, 24, H]);
    expect(q.groupSize).toBe(32);
    expect(q.values.dtype).toBe('int32');
    expect(q.values.shape).toEqual([4, 3, H]);
    layer.dispose();
    const float = new FusedMoE({...BASE, name: 'float_vars'}).buildFor(H);
    expect(names(float.trainableWeights)).toContain('up_gate_proj_weight');
    expect(float.expertWeights('up_gate_proj_weight').format).toBe('float32');
    float.dispose();
  });

  it('setNamedWeights stores a QuantizedExpertWeights as is (shared data, no copy)', async () => {
    await expectNoLeak(async () => {
      const layer = new FusedMoE({...BASE, expertWeightFormat: 'mxfp4', name: 'as_is'}).buildFor(H);
      const w = tf.tensor3d(randn(rng(3), 4 * 24 * H, 0.3), [4, 24, H]);
      const q = moe.quantizeExpertWeights(w, 'mxfp4');
      layer.setNamedWeights({down_proj_weight: q});
      const stored = layer.expertWeights('down_proj_weight');
      expect(stored.values.dataId).toBe(q.values.dataId);
      expect(stored.scales!.dataId).toBe(q.scales!.dataId);
      tf.dispose([w, q as unknown as tf.TensorContainer]);
      expect(Array.from(await stored.values.data()).some(c => c !== 0)).toBeTrue();
      layer.dispose();
    });
  });

  it('quantizeExperts converts in place, frees the float32 weights, and survives save / load bit for bit', async () => {
    const rand = rng(11);
    const {layer, data} = randomLayer({...BASE, name: 'convert_me'}, H, rand);
    const floatBytes = tf.memory().numBytes;
    layer.quantizeExperts('int4', {groupSize: 32});
    const expertFloat = (data.up_gate_proj_weight.length + data.down_proj_weight.length) * 4;
    expect(floatBytes - tf.memory().numBytes).withContext('bytes freed').toBeGreaterThan(0.8 * expertFloat);
    expect(layer.options.expertWeightFormat).toBe('int4');
    const expected = moe.quantizeExpertWeights(tf.tensor3d(data.up_gate_proj_weight, [4, H, 48]), 'int4');
    const stored = layer.expertWeights('up_gate_proj_weight');
    expect(Array.from(await stored.values.data())).toEqual(Array.from(await expected.values.data()));
    expect(Array.from(await stored.scales!.data())).toEqual(Array.from(await expected.scales!.data()));
    tf.dispose(expected as unknown as tf.TensorContainer);

    // Inside a model: save, load, identical codes and outputs.
    const input = tfl.input({shape: [H]});
    const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
    let saved: tf.io.ModelArtifacts | null = null;
    await model.save(tf.io.withSaveHandler(async artifacts => {
      saved = artifacts;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const names = saved!.weightSpecs!.map(s => `${s.name}:${s.dtype}`);
    expect(names).toContain('convert_me/up_gate_proj_weight_values:int32');
    expect(names).toContain('convert_me/down_proj_weight_scales:float32');
    expect(names.some(n => n.startsWith('convert_me/up_gate_proj_weight:'))).toBeFalse();
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
    const copy = loaded.layers[1] as FusedMoE;
    expect(copy.options.expertWeightFormat).toBe('int4');
    for (const name of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
      const a = layer.expertWeights(name), b = copy.expertWeights(name);
      expect(Array.from(await b.values.data())).withContext(name).toEqual(Array.from(await a.values.data()));
      expect(Array.from(await b.scales!.data())).withContext(name).toEqual(Array.from(await a.scales!.data()));
    }
    const x = tf.tensor2d(randn(rand, 5 * H, 1), [5, H]);
    const [y0, y1] = [model.predict(x) as tf.Tensor, loaded.predict(x) as tf.Tensor];
    expect(Array.from(await y1.data())).toEqual(Array.from(await y0.data()));
    tf.dispose([x, y0, y1]);
    // Back to float32: the exact dequantization, trainable again.
    const before = await moe.dequantizeExpertWeights(copy.expertWeights('down_proj_weight')).array();
    copy.quantizeExperts('float32');
    expect(await copy.expertWeights('down_proj_weight').values.array()).toEqual(before);
    expect(copy.trainableWeights.map(w => w.originalName)).toContain('convert_me/down_proj_weight');
    model.dispose();
    loaded.dispose();
  });

  it('a fit trains the router and biases, leaves packed expert weights as they are and says so once', async () => {
    const rand = rng(21);
    const layer = new FusedMoE({...BASE, expertWeightFormat: 'int8', name: 'fit_q'});
    const model = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: [H]}), layer]});
    const w = tf.tensor3d(randn(rand, 4 * H * 48, 0.3), [4, H, 48]);
    const d = tf.tensor3d(randn(rand, 4 * 24 * H, 0.3), [4, 24, H]);
    layer.setNamedWeights({up_gate_proj_weight: w, down_proj_weight: d});
    tf.dispose([w, d]);
    model.compile({optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError'});
    const codes = Array.from(await layer.expertWeights('up_gate_proj_weight').values.data());
    const gate = Array.from(await layer.namedWeights().gate_weight.data());
    const bias = Array.from(await layer.namedWeights().up_gate_proj_bias!.data());
    const warn = spyOn(console, 'warn');
    const x = tf.tensor2d(randn(rand, 16 * H, 1), [16, H]), y = tf.tensor2d(randn(rand, 16 * H, 1), [16, H]);
    await model.fit(x, y, {epochs: 2, batchSize: 8, verbose: 0});
    expect(warn.calls.count()).toBe(1);
    expect(String(warn.calls.argsFor(0)[0])).toMatch(/'int8' are not trained/);
    expect(Array.from(await layer.expertWeights('up_gate_proj_weight').values.data())).toEqual(codes);
    expect(Array.from(await layer.namedWeights().gate_weight.data())).not.toEqual(gate);
    expect(Array.from(await layer.namedWeights().up_gate_proj_bias!.data())).not.toEqual(bias);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('gpt-oss MXFP4 blocks/scales reach an mxfp4 layer bit for bit (fromGptOssMxfp4, then the [E,K,N] layout)',
     async () => {
    await expectNoLeak(async () => {
      const E = 4, N = 24, G = 2;  // down_proj of a layer with H = N = 24 and I = K = 32 G = 64, torch orientation
      const rand = rng(31);
      const blocks = Uint8Array.from({length: E * N * G * 16}, () => Math.floor(rand() * 256));
      const scales = Uint8Array.from({length: E * N * G}, () => 120 + Math.floor(rand() * 12));
      const q = moe.fromGptOssMxfp4({data: blocks, shape: [E, N, G, 16]}, {data: scales, shape: [E, N, G]});
      const untransposed = moe.transposeQuantizedExpertWeights(q);
      const layer = new FusedMoE({numExperts: E, topK: 2, moeIntermediateSize: 64, expertWeightFormat: 'mxfp4',
        name: 'gpt_oss_like'}).buildFor(N);
      layer.setNamedWeights({down_proj_weight: untransposed});
      const stored = moe.dequantizeExpertWeights(layer.expertWeights('down_proj_weight'));
      const direct = moe.dequantizeExpertWeights(q);
      // The same weights, element for element (the stored [E,K,N] is the checkpoint's [E,N,K] transposed).
      const t = tf.transpose(direct, [0, 2, 1]);
      expect(Array.from(await stored.data())).toEqual(Array.from(await t.data()));
      tf.dispose([stored, direct, t, q as unknown as tf.TensorContainer, untransposed as unknown as tf.TensorContainer]);
      layer.dispose();
    });
  });

  it('rejects bad format options and mismatched packed weights, naming them; nothing leaks', () => {
    expect(() => new FusedMoE({...BASE, expertWeightFormat: 'int3' as never}))
        .toThrowError(/option 'expertWeightFormat' must be 'float32' \| 'float16'/);
    expect(() => new FusedMoE({...BASE, expertWeightFormat: 'bfloat16', quantGroupSize: 32}))
        .toThrowError(/option 'quantGroupSize' must be absent for format 'bfloat16'/);
    expect(() => new FusedMoE({...BASE, expertWeightFormat: 'int4', quantGroupSize: 48}))
        .toThrowError(/option 'quantGroupSize' must be one of 32, 64, 128 for int4/);
    expect(() => new FusedMoE({...BASE, expertWeightFormat: 'int8', quantZeroPoint: true}))
        .toThrowError(/option 'quantZeroPoint' must be false for format 'int8' \(int4 only\)/);
    const layer = new FusedMoE({...BASE, expertWeightFormat: 'int4', name: 'mismatch'}).buildFor(H);
    const float = new FusedMoE({...BASE, name: 'float_mismatch'}).buildFor(H);
    const w = tf.zeros([4, 24, H]) as tf.Tensor3D;
    const q8 = moe.quantizeExpertWeights(w, 'int8');
    const q4t = moe.quantizeExpertWeights(tf.transpose(w, [0, 2, 1]) as tf.Tensor3D, 'int4', {transposed: true});
    expectThrowsNoLeak(() => layer.setNamedWeights({down_proj_weight: q8}),
        /weight 'down_proj_weight' must be a QuantizedExpertWeights matching the layer \(format "int4", groupSize 32\), got format "int8", groupSize 24/);
    expectThrowsNoLeak(() => layer.setNamedWeights({down_proj_weight: q4t}), /transposed true.*transposeQuantizedExpertWeights/);
    const narrow = tf.zeros([4, 24, 3]);
    expectThrowsNoLeak(() => layer.setNamedWeights({down_proj_weight: narrow}),
        /weight 'down_proj_weight' must be float32 \[4,24,40\] or a QuantizedExpertWeights, got float32 \[4,24,3\]/);
    expectThrowsNoLeak(() => float.setNamedWeights({down_proj_weight: q8}),
        /expertWeightFormat 'float32' must be a float32 tensor, got a 'int8' QuantizedExpertWeights/);
    expectThrowsNoLeak(() => layer.quantizeExperts('int4', {groupSize: 7}), /option 'quantGroupSize' must be one of 32/);
    expect(() => layer.expertWeights('gate_weight' as never)).toThrowError(/argument 'name' must be 'up_gate_proj_weight'/);
    tf.dispose([w, narrow, q8 as unknown as tf.TensorContainer, q4t as unknown as tf.TensorContainer]);
    layer.dispose();
    float.dispose();
  });
});
