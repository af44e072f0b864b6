// FusedMoE on cpu: reference conformance on our cpu kernels and on the composite path, plus the layer's contract:
// config, weights, models, save/load, backend selection, leaks.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {ALL_MOE_KERNELS, FusedMoE, FusedMoEArgs, registerMoeLayerExecutor, unregisterMoeLayerExecutor, weightSpecs}
  from 'tfjs-moe';
import {fusedMoeForward} from 'tfjs-moe/internal';

import {expectNoLeak, expectThrowsNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {describeLayerConformance, LAYER_TOLERANCE} from './layer_conformance.js';
import {applyAndRead, maxAbsDiff, randn, randomLayer, readWeights, referenceOutput} from './layer_util.js';

describeLayerConformance('cpu kernels', {backend: 'cpu', layerBackend: 'cpu'});
describeLayerConformance('cpu auto', {backend: 'cpu', layerBackend: 'auto', small: true});
describeLayerConformance('cpu composite', {backend: 'cpu', layerBackend: 'composite'});

const ALL_ON: FusedMoEArgs = {
  numExperts: 8, topK: 2, moeIntermediateSize: 4, topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 2,
  routedScalingFactor: 2.5, renormalize: false, renormalizeEpsilon: 1e-6, useCorrectionBias: true, latentSize: 3,
  withBias: true, zeroExperts: 0,
  probInAdvance: true, sharedExpertIntermediateSize: 5, sharedExpertGate: true, backend: 'composite',
  computeDtype: 'bfloat16', routerBias: true, activation: 'clamped_swiglu', swigluAlpha: 1.5, swigluLimit: 5,
};

describe('FusedMoE config', () => {
  it('round-trips every option and the initializers through getConfig/fromConfig', () => {
    const layer = new FusedMoE({...ALL_ON, name: 'moe_cfg', kernelInitializer: 'glorotNormal',
      biasInitializer: {className: 'Constant', config: {value: 0.25}}});
    const config = layer.getConfig();
    const copy = FusedMoE.fromConfig(FusedMoE, JSON.parse(JSON.stringify(config))) as FusedMoE;
    expect(copy.options).toEqual(layer.options);
    expect(copy.getConfig()).toEqual(config);
    for (const key of Object.keys(ALL_ON)) expect(config[key]).withContext(key).toEqual((ALL_ON as never)[key]);
    // tfjs serializes glorotNormal as the VarianceScaling it is.
    expect(config.kernelInitializer).toEqual(jasmine.objectContaining({className: 'VarianceScaling'}));
    expect((config.kernelInitializer as {config: {distribution: string}}).config.distribution).toBe('normal');
    expect((config.biasInitializer as {config: {value: number}}).config.value).toBe(0.25);
  });

  it('round-trips sparsemixer, and the camel-cased enum values tfjs-layers gives back when it loads a model', () => {
    const args: FusedMoEArgs = {numExperts: 6, topK: 2, moeIntermediateSize: 3, topkMethod: 'sparsemixer',
      sparsemixerEpsilon: 0.2, renormalize: false};
    const layer = new FusedMoE(args);
    const config = layer.getConfig();
    expect(config.topkMethod).toBe('sparsemixer');
    expect(config.sparsemixerEpsilon).toBe(0.2);
    const copy = FusedMoE.fromConfig(FusedMoE, JSON.parse(JSON.stringify(config))) as FusedMoE;
    expect(copy.options).toEqual(layer.options);
    const camel = FusedMoE.fromConfig(FusedMoE, {...layer.getConfig(), topkMethod: 'groupLimitedGreedy', nGroup: 2,
      topkGroup: 1, topK: 2, sparsemixerEpsilon: 0.01, activation: 'clampedSwiglu'}) as FusedMoE;
    expect(camel.options.topkMethod).toBe('group_limited_greedy');
    expect(camel.options.activation).toBe('clamped_swiglu');
    const noaux = FusedMoE.fromConfig(FusedMoE, {...layer.getConfig(), topkMethod: 'noauxTc', sparsemixerEpsilon: 0.01}) as FusedMoE;
    expect(noaux.options.topkMethod).toBe('noaux_tc');
  });

  it('reads probInAdvance as routingWeightOn \'activation\' (its older name), both ways', () => {
    const old = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, probInAdvance: true});
    expect(old.options.routingWeightOn).toBe('activation');
    const renamed = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, routingWeightOn: 'activation'});
    expect(renamed.options.probInAdvance).toBeTrue();
    const onInput = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3, routingWeightOn: 'input'});
    expect(onInput.options.probInAdvance).toBeFalse();
  });

  it('fills the documented defaults', () => {
    const layer = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 3});
    expect(layer.options).toEqual({numExperts: 4, topK: 2, moeIntermediateSize: 3, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, sparsemixerEpsilon: 0.01, renormalize: true, renormalizeEpsilon: null, useCorrectionBias: false,
      zeroExperts: 0, latentSize: null, withBias: false, probInAdvance: false, routingWeightOn: 'output', routerBias: false,
      activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7, sharedExpertIntermediateSize: 0, sharedExpertGate: false,
      backend: 'auto', computeDtype: 'float32', expertWeightFormat: 'float32', quantGroupSize: null,
      quantZeroPoint: false});
  });

  it('rejects bad options with an error naming the option, before any tensor exists', () => {
    const base = {numExperts: 8, topK: 2, moeIntermediateSize: 4};
    const bad: Array<[Partial<FusedMoEArgs>, RegExp]> = [
      [{numExperts: 0}, /option 'numExperts' must be an integer >= 1, got 0/],
      [{topK: 9}, /option 'topK' must be <= numExperts \(8\), got 9/],
      [{moeIntermediateSize: 2.5}, /'moeIntermediateSize' must be an integer/],
      [{topkMethod: 'softmax' as never},
        /'topkMethod' must be 'greedy' \| 'noaux_tc' \| 'group_limited_greedy' \| 'sparsemixer', got "softmax"/],
      [{topkMethod: 'sparsemixer', topK: 3}, /'topK' must be 2 with topkMethod 'sparsemixer' \(it always picks two experts\), got 3/],
      [{topkMethod: 'sparsemixer', useCorrectionBias: true}, /'useCorrectionBias' must be false with topkMethod 'sparsemixer'/],
      [{topkMethod: 'sparsemixer', nGroup: 2}, /'nGroup' must be 1 with topkMethod 'sparsemixer'/],
      [{topkMethod: 'sparsemixer', sparsemixerEpsilon: -1}, /'sparsemixerEpsilon' must be a finite number >= 0, got -1/],
      [{topkMethod: 'sparsemixer', sparsemixerEpsilon: NaN}, /'sparsemixerEpsilon' must be a finite number, got NaN/],
      [{sparsemixerEpsilon: 0.1}, /'sparsemixerEpsilon' must be 0.01 \(its default\) unless topkMethod is 'sparsemixer' \(got topkMethod 'greedy'\)/],
      [{topkMethod: 'noaux_tc', nGroup: 3}, /'nGroup' must be a divisor of numExperts \(8\), got 3/],
      [{topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 5}, /'topkGroup' must be <= nGroup \(4\)/],
      [{topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 1, topK: 3}, /'topK' must be <= topkGroup \* numExperts/],
      [{topkMethod: 'group_limited_greedy', nGroup: 3}, /'nGroup' must be a divisor of numExperts \(8\), got 3/],
      [{topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 5}, /'topkGroup' must be <= nGroup \(4\)/],
      [{topkMethod: 'group_limited_greedy', nGroup: 4, useCorrectionBias: true},
        /'useCorrectionBias' must be false with topkMethod 'group_limited_greedy'/],
      [{zeroExperts: -1}, /'zeroExperts' must be an integer >= 0, got -1/],
      [{zeroExperts: 2, topK: 11}, /'topK' must be <= numExperts \+ zeroExperts \(10\), got 11/],
      [{zeroExperts: 2, latentSize: 4}, /'zeroExperts' must be 0 with latentSize/],
      [{zeroExperts: 2, topkMethod: 'noaux_tc', nGroup: 4}, /'nGroup' must be a divisor of numExperts \+ zeroExperts \(10\)/],
      [{renormalizeEpsilon: -1e-6}, /'renormalizeEpsilon' must be null or a finite number >= 0, got -0.000001/],
      [{renormalizeEpsilon: Infinity}, /'renormalizeEpsilon' must be null or a finite number >= 0/],
      [{nGroup: 2}, /'nGroup' must be 1 with topkMethod 'greedy'/],
      [{routedScalingFactor: NaN, topkMethod: 'noaux_tc'}, /'routedScalingFactor' must be a finite number/],
      [{renormalize: 'yes' as never}, /'renormalize' must be a boolean, got "yes"/],
      [{latentSize: 0}, /'latentSize' must be an integer >= 1, got 0/],
      [{sharedExpertIntermediateSize: -1}, /'sharedExpertIntermediateSize' must be an integer >= 0/],
      [{sharedExpertGate: true}, /'sharedExpertGate' must be false when sharedExpertIntermediateSize is 0/],
      [{backend: 'gpu' as never}, /'backend' must be 'auto' \| 'cpu' \| 'webgpu' \| 'cuda' \| 'composite', got "gpu"/],
      [{computeDtype: 'int8' as never}, /'computeDtype' must be 'float32' \| 'bfloat16' \| 'float16', got "int8"/],
      [{activation: 'gelu' as never}, /'activation' must be 'swiglu' or 'clamped_swiglu', got "gelu"/],
      [{routerBias: 1 as never}, /'routerBias' must be a boolean, got 1/],
      [{swigluLimit: 0}, /'swigluLimit' must be a finite number > 0, got 0/],
      [{swigluAlpha: Infinity}, /'swigluAlpha' must be a finite number, got Infinity/],
      [{routingWeightOn: 'weights' as never}, /'routingWeightOn' must be 'output' \| 'activation' \| 'input', got "weights"/],
      [{routingWeightOn: 'input', withBias: true}, /'routingWeightOn' must be 'output' or 'activation' with withBias/],
      [{routingWeightOn: 'input', probInAdvance: true}, /'probInAdvance' must be false with routingWeightOn 'input'/],
      [{routingWeightOn: 'activation', probInAdvance: false}, /'probInAdvance' must be true with routingWeightOn 'activation'/],
      [{kernelInitializer: 'noSuchInit'}, /'kernelInitializer' must be an Initializer or the name/],
    ];
    for (const [args, pattern] of bad) {
      expectThrowsNoLeak(() => new FusedMoE({...base, ...args} as FusedMoEArgs), pattern);
    }
  });
});

describe('FusedMoE weights', () => {
  it('creates exactly the documented names and shapes, each only when its option is on', () => {
    const H = 6, E = 8, I = 4, L = 3, S = 5;
    const layer = new FusedMoE({...ALL_ON, name: 'moe_w'}).buildFor(H);
    // layer.weights lists trainable weights first, then the non-trainable correction bias.
    const got = layer.weights.map(v => [v.name, v.shape, v.trainable]);
    expect(got).toEqual([
      ['moe_w/gate_weight', [H, E], true],
      ['moe_w/gate_bias', [E], true],
      ['moe_w/up_gate_proj_weight', [E, L, 2 * I], true],
      ['moe_w/up_gate_proj_bias', [E, 2 * I], true],
      ['moe_w/down_proj_weight', [E, I, L], true],
      ['moe_w/down_proj_bias', [E, L], true],
      ['moe_w/fc1_latent_proj_weight', [H, L], true],
      ['moe_w/fc2_latent_proj_weight', [L, H], true],
      ['moe_w/shared_up_gate_proj_weight', [H, 2 * S], true],
      ['moe_w/shared_down_proj_weight', [S, H], true],
      ['moe_w/shared_expert_gate_weight', [H, 1], true],
      ['moe_w/gate_correction_bias', [E], false],
    ]);
    layer.dispose();
    const plain = new FusedMoE({numExperts: E, topK: 2, moeIntermediateSize: I, name: 'moe_p'});
    plain.apply(tfl.input({shape: [3, H]}));
    expect(plain.weights.map(v => [v.name, v.shape])).toEqual([
      ['moe_p/gate_weight', [H, E]], ['moe_p/up_gate_proj_weight', [E, H, 2 * I]],
      ['moe_p/down_proj_weight', [E, I, H]]]);
    expect(weightSpecs(plain.options, H).map(s => s.name)).toEqual(['gate_weight', 'up_gate_proj_weight',
      'down_proj_weight']);
    plain.dispose();
  });

  it('getWeights/setWeights round-trip and change the output accordingly', async () => {
    const rand = rng(11);
    const H = 5, T = 4;
    const a = randomLayer({...ALL_ON}, H, rand), b = randomLayer({...ALL_ON}, H, rand);
    const x = randn(rand, T * H);
    const ya = await applyAndRead(a.layer, x, [T, H]);
    await expectNoLeak(() => b.layer.setWeights(a.layer.getWeights()));
    const yb = await applyAndRead(b.layer, x, [T, H]);
    expect(maxAbsDiff(ya, yb)).toBe(0);
    a.layer.dispose();
    b.layer.dispose();
  });

  it('setNamedWeights checks names and shapes before writing anything', () => {
    const layer = new FusedMoE({numExperts: 4, topK: 1, moeIntermediateSize: 2}).buildFor(3);
    const good = tf.zeros([3, 4]), bad = tf.zeros([4, 3]);
    expectThrowsNoLeak(() => layer.setNamedWeights({gate_weight: good, up_gate_proj_weight: bad}),
        /weight 'up_gate_proj_weight' must be float32 \[4,3,4\], got float32 \[4,3\]/);
    expectThrowsNoLeak(() => layer.setNamedWeights({down_proj_bias: good}), /no weight 'down_proj_bias'/);
    tf.dispose([good, bad]);
    layer.dispose();
  });

  it('uses the given initializers', async () => {
    const layer = new FusedMoE({numExperts: 4, topK: 1, moeIntermediateSize: 2, withBias: true,
      kernelInitializer: tfl.initializers.ones(), biasInitializer: 'zeros'}).buildFor(3);
    const [gate, , bias] = layer.getWeights();
    expect(Array.from(await gate.data())).toEqual(new Array(12).fill(1));
    expect(Array.from(await bias.data())).toEqual(new Array(16).fill(0));
    layer.dispose();
  });
});

describe('FusedMoE in models', () => {
  const H = 6, S = 3, B = 2;
  const args: FusedMoEArgs = {numExperts: 4, topK: 2, moeIntermediateSize: 5, withBias: true,
    sharedExpertIntermediateSize: 3, sharedExpertGate: true};

  async function checkAgainstReference(layer: FusedMoE, output: tf.Tensor, x: Float32Array, tokens: number) {
    const data = await readWeights(layer);
    const err = relError(await output.data(), referenceOutput(layer.options, data, x, tokens, H));
    recordError('FusedMoE [cpu models]', err);
    expect(err).toBeLessThan(LAYER_TOLERANCE);
  }

  it('works in tf.sequential through model.predict (3-D input)', async () => {
    const rand = rng(21);
    const layer = new FusedMoE({...args, inputShape: [S, H], kernelInitializer: tfl.initializers.randomNormal({
      mean: 0, stddev: 0.5, seed: 3})});
    const model = tfl.sequential({layers: [layer]});
    const x = randn(rand, B * S * H);
    const input = tf.tensor(x, [B, S, H]);
    const before = tf.memory().numTensors;
    const y = model.predict(input) as tf.Tensor;
    expect(y.shape).toEqual([B, S, H]);
    await checkAgainstReference(layer, y, x, B * S);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    input.dispose();
    model.dispose();
  });

  it('works in the functional API (2-D input), and survives model.save / tf.loadLayersModel', async () => {
    const rand = rng(22);
    const inp = tfl.input({shape: [H]});
    const layer = new FusedMoE({...args, topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1, routedScalingFactor: 1.5,
      useCorrectionBias: true, latentSize: 4, probInAdvance: true, name: 'moe_f',
      kernelInitializer: tfl.initializers.randomNormal({mean: 0, stddev: 0.5, seed: 4}),
      biasInitializer: tfl.initializers.randomUniform({minval: -0.2, maxval: 0.2, seed: 5})});
    const out = layer.apply(inp) as tfl.SymbolicTensor;
    const model = tfl.model({inputs: inp, outputs: out});
    const x = randn(rand, 5 * H);
    const input = tf.tensor(x, [5, H]);
    const y = model.predict(input) as tf.Tensor;
    await checkAgainstReference(layer, y, x, 5);

    let saved: tf.io.ModelArtifacts | null = null;
    await model.save(tf.io.withSaveHandler(async artifacts => {
      saved = artifacts;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const names = saved!.weightSpecs!.map(s => s.name);
    expect(names).toContain('moe_f/gate_correction_bias');
    expect(names).toContain('moe_f/fc1_latent_proj_weight');
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
    const loadedLayer = loaded.layers.find(l => l instanceof FusedMoE) as FusedMoE;
    expect(loadedLayer).toBeDefined();
    expect(loadedLayer.options).toEqual(layer.options);
    const y2 = loaded.predict(input) as tf.Tensor;
    expect(maxAbsDiff(await y.data(), await y2.data())).toBe(0);
    tf.dispose([y, y2, input]);
    model.dispose();
    loaded.dispose();
  });
});

describe('FusedMoE backend selection', () => {
  const H = 4, T = 3;
  const args: FusedMoEArgs = {numExperts: 4, topK: 2, moeIntermediateSize: 3};

  it('auto runs our kernels when registered for the active backend', () => {
    const layer = new FusedMoE(args);
    expect(ALL_MOE_KERNELS.every(k => tf.getKernel(k, 'cpu') != null)).toBeTrue();
    expect(layer.selectedPath()).toBe('kernels:cpu');
    expect(new FusedMoE({...args, backend: 'composite'}).selectedPath()).toBe('composite:cpu');
  });

  it('reselects per call: auto falls back to composite on a backend without our kernels', async () => {
    // A second cpu backend that has tfjs's kernels but none of ours.
    const name = 'moe-test-plain-cpu';
    if (tf.findBackendFactory(name) == null) {
      const cpu = tf.findBackend('cpu')!;
      tf.registerBackend(name, () => new (cpu.constructor as new () => tf.KernelBackend)());
      for (const k of tf.getKernelsForBackend('cpu')) {
        if (!(ALL_MOE_KERNELS as readonly string[]).includes(k.kernelName)) tf.registerKernel({...k, backendName: name});
      }
    }
    const rand = rng(31);
    const {layer, data} = randomLayer({...args, withBias: true}, H, rand);
    const x = randn(rand, T * H);
    const expected = referenceOutput(layer.options, data, x, T, H);
    const onCpu = await applyAndRead(layer, x, [T, H]);
    expect(layer.selectedPath()).toBe('kernels:cpu');
    await tf.setBackend(name);
    try {
      expect(layer.selectedPath()).toBe(`composite:${name}`);
      const onPlain = await applyAndRead(layer, x, [T, H]);
      expect(relError(onPlain, expected)).toBeLessThan(LAYER_TOLERANCE);
      const strict = new FusedMoE({...args, backend: 'cpu'});
      expect(() => strict.selectedPath()).toThrowError(
          /backend 'cpu' requested but the active tfjs backend is 'moe-test-plain-cpu'/);
    } finally {
      await tf.setBackend('cpu');
    }
    expect(relError(onCpu, expected)).toBeLessThan(LAYER_TOLERANCE);
    layer.dispose();
  });

  it('an unavailable explicit backend throws a clear error and leaks nothing', () => {
    const rand = rng(32);
    const webgpu = randomLayer({...args, backend: 'webgpu'}, H, rand).layer;
    const cuda = randomLayer({...args, backend: 'cuda'}, H, rand).layer;
    const x = tf.tensor(randn(rand, T * H), [T, H]);
    expectThrowsNoLeak(() => webgpu.apply(x), /backend 'webgpu' requested but the active tfjs backend is 'cpu'/);
    unregisterMoeLayerExecutor('cuda');
    expectThrowsNoLeak(() => cuda.apply(x),
        /backend 'cuda' requested but the CUDA addon is not available: no 'cuda' executor is registered/);
    registerMoeLayerExecutor('cuda', {availability: () => ({available: false, reason: 'no CUDA device'}),
      forward: () => { throw new Error('must not run'); }});
    try {
      expectThrowsNoLeak(() => cuda.apply(x), /the CUDA addon is not available: no CUDA device/);
    } finally {
      unregisterMoeLayerExecutor('cuda');
    }
    x.dispose();
    webgpu.dispose();
    cuda.dispose();
  });

  it('runs a registered executor (the hook the CUDA addon uses)', async () => {
    const rand = rng(33);
    const {layer, data} = randomLayer({...args, backend: 'cuda'}, H, rand);
    let calls = 0;
    const owners: object[] = [], released: object[] = [];
    registerMoeLayerExecutor('cuda', {availability: () => ({available: true}),
      forward: (x, w, o, ctx) => { calls++; owners.push(ctx!.owner); return fusedMoeForward(x, w, o); },
      release: owner => released.push(owner)});
    try {
      const x = randn(rand, 2 * T * H);
      const y = await expectNoLeak(() => applyAndRead(layer, x, [2, T, H]));
      expect(calls).toBe(1);
      expect(owners).toEqual([layer]);
      expect(relError(y, referenceOutput(layer.options, data, x, 2 * T, H))).toBeLessThan(LAYER_TOLERANCE);
      expect(() => registerMoeLayerExecutor('auto', {availability: () => ({available: true}), forward: fusedMoeForward}))
          .toThrowError(/reserved/);
      layer.dispose();
      expect(released).toEqual([layer]);
    } finally {
      unregisterMoeLayerExecutor('cuda');
    }
  });
});

describe('FusedMoE leaks and bad input', () => {
  it('leaves no tensor behind across repeated calls, on kernels and composite', async () => {
    const rand = rng(41);
    for (const backend of ['cpu', 'composite'] as const) {
      const {layer} = randomLayer({...ALL_ON, backend}, 6, rand);
      const x = tf.tensor(randn(rand, 2 * 3 * 6), [2, 3, 6]);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) (layer.apply(x) as tf.Tensor).dispose();
      expect(tf.memory().numTensors).withContext(backend).toBe(before);
      x.dispose();
      layer.dispose();
    }
  });

  it('rejects inputs of the wrong hidden size, rank or dtype with no leak', () => {
    const rand = rng(42);
    const {layer} = randomLayer({numExperts: 4, topK: 1, moeIntermediateSize: 2}, 5, rand);
    const bad = [tf.zeros([3, 4]), tf.zeros([5]), tf.zeros([1, 2, 3, 5]), tf.zeros([3, 5], 'int32')];
    const patterns = [/expected axis -1 of input shape to have value 5|input must be/,
      /ndim|input must be/, /ndim|input must be/, /must be float32/];
    bad.forEach((t, i) => expectThrowsNoLeak(() => layer.apply(t), patterns[i]));
    tf.dispose(bad);
    layer.dispose();
  });

  it('handles zero tokens ([0,H] and [B,0,H]) on kernels and composite', async () => {
    for (const backend of ['cpu', 'composite'] as const) {
      const {layer} = randomLayer({...ALL_ON, backend}, 5, rng(43));
      for (const shape of [[0, 5], [2, 0, 5]]) {
        const y = await expectNoLeak(() => applyAndRead(layer, new Float32Array(0), shape));
        expect(y.length).toBe(0);
      }
      layer.dispose();
    }
  });

  it('a layer built by build() alone can be disposed, freeing its weights', () => {
    const before = tf.memory().numTensors;
    const layer = new FusedMoE({...ALL_ON});
    layer.build([null, 4]);
    expect(tf.memory().numTensors).toBe(before + layer.weights.length);
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
