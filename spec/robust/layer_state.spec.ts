// FusedMoE layer state and arguments (issue 10, items 9 and 11-15): all-or-nothing setNamedWeights, no leaked
// auxiliary loss, webgpu -> cpu in Node, unknown option keys, selectedPath under setKernelPath, executor output
// checks, and messages that show NaN / undefined / bigint as themselves.
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEArgs, getMoeLayerExecutor, loadHuggingFaceMoe, registerMoeLayerExecutor, setKernelPath,
  unregisterMoeLayerExecutor} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, relError, rng} from '../helpers/util.js';
import {FAMILY_CASES, hfTensors, randomBlock} from '../io/hf_test_util.js';
import {applyAndRead, randn, randomLayer, readWeights, referenceOutput} from '../layers/layer_util.js';
import {describeWebGPU} from '../webgpu/webgpu_env.js';

const BASE = {numExperts: 4, topK: 2, moeIntermediateSize: 3};
const H = 5;

describe('robust: FusedMoE setNamedWeights and apply inputs (item 11)', () => {
  it('a disposed tensor is rejected naming the weight, and nothing listed before it is applied', async () => {
    const {layer} = randomLayer(BASE, H, rng(1));
    try {
      const before = await readWeights(layer);
      const fresh = tf.ones([H, 4]);
      const dead = tf.ones([4, H, 6]);
      dead.dispose();
      expectThrowsNoLeak(() => layer.setNamedWeights({gate_weight: fresh, up_gate_proj_weight: dead}),
          /setNamedWeights: weight 'up_gate_proj_weight' must be a float32 tf.Tensor of shape \[4,5,6\], got a disposed tensor/);
      expect((await readWeights(layer)).gate_weight).toEqual(before.gate_weight);
      fresh.dispose();
      // The layer still works.
      const x = randn(rng(2), 3 * H);
      const y = await expectNoLeak(() => applyAndRead(layer, x, [3, H]));
      expect(relError(y, referenceOutput(layer.options, before, x, 3, H))).toBeLessThan(1e-4);
    } finally {
      layer.dispose();
    }
  });

  it('null, a non-tensor, an unknown name (with a hint) and a wrong shape are errors before any write', () => {
    const {layer} = randomLayer(BASE, H, rng(3));
    try {
      const ok = tf.zeros([H, 4]);
      const cases: Array<[unknown, RegExp]> = [
        [null, /setNamedWeights: argument 'values' must be an object of weight name -> tf.Tensor, got null/],
        [ok, /argument 'values' must be an object .*got a float32 tensor of shape \[5,4\]/],
        [{gate_weight: [1, 2]}, /weight 'gate_weight' must be a float32 tf.Tensor of shape \[5,4\], got an array of length 2/],
        [{gate_weigth: ok}, /no weight 'gate_weigth' \(did you mean 'gate_weight'\?\)/],
        [{gate_weight: ok, down_proj_weight: tf.zeros([1])}, /weight 'down_proj_weight' must be float32 \[4,3,5\]/],
      ];
      for (const [values, pattern] of cases) {
        expectThrowsNoLeak(() => layer.setNamedWeights(values as never), pattern);
      }
      tf.dispose(ok);
    } finally {
      layer.dispose();
    }
    tf.disposeVariables();
  });

  it('a packed layer quantizes float32 experts before any write: a NaN (no int8 code) or a disposed tensor sets nothing', async () => {
    const layer = new FusedMoE({...BASE, expertWeightFormat: 'int8', name: 'packed_nan'}).buildFor(H);
    try {
      const gateBefore = await layer.namedWeights().gate_weight!.data();
      const upBefore = await layer.expertWeights('up_gate_proj_weight').values.data();
      const fresh = tf.ones([H, 4]);
      const upData = new Float32Array(4 * H * 6).fill(0.5);
      upData[7] = NaN;
      const nanUp = tf.tensor3d(upData, [4, H, 6]);
      const dead = tf.ones([4, 3, H]);
      dead.dispose();
      expectThrowsNoLeak(() => layer.setNamedWeights({gate_weight: fresh, up_gate_proj_weight: nanUp}),
          /FusedMoE 'packed_nan': setNamedWeights: weight 'up_gate_proj_weight': .*must hold finite values for format 'int8', got NaN/);
      expectThrowsNoLeak(() => layer.setNamedWeights({gate_weight: fresh, down_proj_weight: dead}),
          /weight 'down_proj_weight' must be float32 \[4,3,5\] or a QuantizedExpertWeights, got a disposed tensor/);
      expect(await layer.namedWeights().gate_weight!.data()).withContext('gate_weight untouched').toEqual(gateBefore);
      expect(await layer.expertWeights('up_gate_proj_weight').values.data()).toEqual(upBefore);
      tf.dispose([fresh, nanUp]);
    } finally {
      layer.dispose();
    }
  });

  it('float32 weights are not scanned for NaN (a readback; IEEE semantics define the result): NaN experts give NaN rows only for their tokens', async () => {
    const {layer, data} = randomLayer({...BASE, topK: 1}, H, rng(11));
    try {
      // Expert 1's down projection is NaN; the router sends each token to one expert.
      const down = Float32Array.from(data.down_proj_weight);
      down.fill(NaN, 3 * H, 6 * H);
      const t = tf.tensor3d(down, [4, 3, H]);
      layer.setNamedWeights({down_proj_weight: t});
      t.dispose();
      const x = randn(rng(12), 16 * H);
      const y = await expectNoLeak(() => applyAndRead(layer, x, [16, H]));
      const want = referenceOutput(layer.options, {...data, down_proj_weight: down}, x, 16, H);
      for (let i = 0; i < want.length; i++) {
        expect(Number.isNaN(y[i])).withContext(`element ${i}`).toBe(Number.isNaN(want[i]));
      }
      expect(want.some(Number.isNaN) && !want.every(Number.isNaN)).withContext('some tokens use expert 1, some not').toBeTrue();
    } finally {
      layer.dispose();
    }
  });

  it('apply() of a disposed tensor names the problem', () => {
    const {layer} = randomLayer(BASE, H, rng(4));
    const x = tf.ones([2, H]);
    x.dispose();
    expectThrowsNoLeak(() => layer.apply(x), /disposed/);
    layer.dispose();
  });

  it('loadHuggingFaceMoe rejects a disposed weight, null options, model_type toString/__proto__, a bigint prefix', () => {
    const c = FAMILY_CASES.find(f => f.family === 'qwen3_moe')!;
    const tensors = hfTensors(c, randomBlock(c, rng(5)), 'hub', '');
    const name = Object.keys(tensors).find(n => n.includes('experts.1.up_proj'))!;
    const cases: Array<[() => unknown, RegExp]> = [
      [() => loadHuggingFaceMoe(c.config, tensors, null as never), /argument 'options' must be an options object .*got null/],
      [() => loadHuggingFaceMoe({...c.config, model_type: 'toString'}, tensors), /unknown model_type 'toString'/],
      [() => loadHuggingFaceMoe({...c.config, model_type: '__proto__'}, tensors), /unknown model_type '__proto__'/],
      [() => loadHuggingFaceMoe(c.config, tensors, {prefix: 3n as never}), /option 'prefix' must be a string, got 3n/],
      [() => loadHuggingFaceMoe(null, tensors), /argument 'config' must be a parsed config.json object, got null/],
    ];
    for (const [fn, pattern] of cases) expectThrowsNoLeak(fn, pattern);
    // Every entry of the block is checked before any conversion: also one the loader would not read.
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, {...tensors, 'mlp.extra': 3} as never),
        /loadHuggingFaceMoe: weight 'mlp.extra' must be a live tf.Tensor or raw data of readSafetensors' keepDtype, got 3/);
    tensors[name].dispose();
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors), new RegExp(`weight '${name}' must be a live tf.Tensor`));
    tf.dispose(Object.values(tensors));
  });
});

describe('robust: auxiliary loss outside any scope (item 12)', () => {
  it('apply(x, {training: true}) with auxLossCoef > 0 keeps at most the last loss alive', async () => {
    const {layer} = randomLayer({...BASE, auxLossCoef: 0.01}, H, rng(6));
    const x = tf.tensor2d(randn(rng(7), 4 * H), [4, H]);
    try {
      (layer.apply(x, {training: true}) as tf.Tensor).dispose();
      const after1 = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) (layer.apply(x, {training: true}) as tf.Tensor).dispose();
      expect(tf.memory().numTensors).withContext('tensors after 3 more training calls').toBe(after1);
      expect(layer.auxLoss()).not.toBeNull();
    } finally {
      x.dispose();
      layer.dispose();
    }
  });
});

describe('robust: FusedMoE options (items 9, 14, 15)', () => {
  it('unknown keys are rejected with a did-you-mean hint; LayerArgs keys stay allowed', () => {
    const cases: Array<[object, RegExp]> = [
      [{topkmethod: 'greedy'}, /unknown option 'topkmethod' \(did you mean 'topkMethod'\?\)/],
      [{num_experts: 4}, /unknown option 'num_experts' \(did you mean 'numExperts'\?\)/],
      [{auxLosCoef: 0.1}, /unknown option 'auxLosCoef' \(did you mean 'auxLossCoef'\?\)/],
      [{zzz: 1}, /unknown option 'zzz'; options are numExperts/],
    ];
    for (const [extra, pattern] of cases) expectThrowsNoLeak(() => new FusedMoE({...BASE, ...extra} as FusedMoEArgs), pattern);
    const layer = new FusedMoE({...BASE, name: 'ok_layer', trainable: false, inputShape: [H], dtype: 'float32',
      batchSize: 2, inputDType: 'float32'} as FusedMoEArgs);
    expect(layer.name).toBe('ok_layer');
  });

  it('sizes above int32 or the expert maximum are rejected before anything is allocated', () => {
    const cases: Array<[object, RegExp]> = [
      [{numExperts: 2 ** 31 - 1, topK: 1}, /option 'numExperts' must be an integer <= 65536, got 2147483647/],
      [{numExperts: 2 ** 53, topK: 1}, /option 'numExperts' must be an integer <= 65536/],
      [{moeIntermediateSize: 2 ** 31}, /option 'moeIntermediateSize' must be an integer <= 1073741823/],
    ];
    for (const [extra, pattern] of cases) expectThrowsNoLeak(() => new FusedMoE({...BASE, ...extra}), pattern);
    const before = tf.memory().numBytes;
    const huge = new FusedMoE({numExperts: 65536, topK: 1, moeIntermediateSize: 2 ** 20});
    expectThrowsNoLeak(() => huge.buildFor(64),
        /weight 'up_gate_proj_weight' of shape \[65536,64,2097152\] would hold \d+ elements, above the maximum 2147483647/);
    expect(tf.memory().numBytes).toBe(before);
  });

  it('bigint, NaN, undefined and null options say so (not "null", "undefined undefined" or a TypeError)', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => new FusedMoE({...BASE, topK: 2n as never}), /option 'topK' must be an integer >= 1, got 2n \(a bigint\)/],
      [() => new FusedMoE({...BASE, numExperts: NaN}), /option 'numExperts' must be an integer >= 1, got NaN/],
      [() => new FusedMoE({...BASE, routedScalingFactor: Infinity}), /'routedScalingFactor' must be a finite number, got Infinity/],
      [() => new FusedMoE({...BASE, auxLossCoef: NaN}), /option 'auxLossCoef' must be a finite number >= 0, got NaN/],
      [() => new FusedMoE(null as never), /FusedMoE: expected an options object, got null/],
      [() => FusedMoE.fromConfig(FusedMoE, null as never), /FusedMoE.fromConfig: argument 'config' must be a config object, got null/],
    ];
    for (const [fn, pattern] of cases) expectThrowsNoLeak(fn, pattern);
  });

  it("selectedPath() reports the composite path under setKernelPath('composite')", () => {
    const layer = new FusedMoE(BASE).buildFor(H);
    try {
      expect(layer.selectedPath()).toBe('kernels:cpu');
      setKernelPath('composite');
      expect(layer.selectedPath()).toBe('composite:cpu');
      expect(new FusedMoE({...BASE, backend: 'cpu'}).selectedPath()).toBe('composite:cpu');
    } finally {
      setKernelPath('auto');
      layer.dispose();
    }
  });

  it('an executor that returns the wrong shape (or not a tensor) is an error, with nothing leaked', () => {
    const layer = new FusedMoE({...BASE, backend: 'cuda'}).buildFor(H);
    const x = tf.ones([3, H]);
    const previous = getMoeLayerExecutor('cuda');
    try {
      for (const [forward, got] of [
        [() => tf.zeros([3, H + 1]), /got a float32 tensor of shape \[3,6\]/],
        [() => tf.zeros([3, H], 'int32'), /got a int32 tensor of shape \[3,5\]/],
        [() => null, /got null/],
      ] as Array<[() => tf.Tensor, RegExp]>) {
        registerMoeLayerExecutor('cuda', {availability: () => ({available: true}), forward: forward as never});
        expectThrowsNoLeak(() => layer.apply(x), new RegExp(
            `the forward of path 'executor:cuda' must return a float32 tensor of shape \\[3,5\\], ${got.source}`));
      }
    } finally {
      unregisterMoeLayerExecutor('cuda');
      if (previous != null) registerMoeLayerExecutor('cuda', previous);
      x.dispose();
      layer.dispose();
    }
  });
});

describeWebGPU('robust: a layer that ran on webgpu, then on cpu in Node (item 13)', () => {
  it('fails with a clear error, and runs after await layer.moveWeightsToBackend()', async () => {
    const {layer, data} = randomLayer({...BASE, backend: 'auto'}, H, rng(8));
    const x = randn(rng(9), 3 * H);
    try {
      const want = referenceOutput(layer.options, data, x, 3, H);
      expect(relError(await applyAndRead(layer, x, [3, H]), want)).toBeLessThan(1e-4);
      await tf.setBackend('cpu');
      const input = tf.tensor2d(x, [3, H]);
      if (typeof OffscreenCanvas === 'undefined') {
        expectThrowsNoLeak(() => layer.apply(input),
            /weight 'gate_weight' lives on the 'webgpu' backend.*await layer.moveWeightsToBackend\(\)/);
      }
      input.dispose();
      expect(await layer.moveWeightsToBackend()).toBeGreaterThan(0);
      expect(await layer.moveWeightsToBackend()).toBe(0);
      expect(relError(await applyAndRead(layer, x, [3, H]), want)).toBeLessThan(1e-4);
    } finally {
      layer.dispose();
      await tf.setBackend('webgpu');
    }
  }, 300_000);  // SwiftShader compiles each new pipeline on the CPU
});
