/**
 * FusedMoE.applyDevice, the layer's device-resident forward (activations kept on the executor's device between
 * layers), through the executor seam: a stand-in executor whose "device" is host memory checks what the layer
 * hands over and returns; the result of a chain matches the float64 reference applied layer after layer, and every
 * misuse fails naming the argument with nothing leaked. The CUDA executor itself: spec/cuda/cuda_device_activation.
 */
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import {DeviceActivation, FusedMoE, registerMoeLayerExecutor, unregisterMoeLayerExecutor} from 'tfjs-moe';
import {fusedMoeForward, registerCudaLayerExecutor} from 'tfjs-moe/internal';

import {expectNoLeak, expectThrowsNoLeak, relError, rng} from '../helpers/util.js';
import {LAYER_TOLERANCE} from './layer_conformance.js';
import {randn, randomLayer, referenceOutput} from './layer_util.js';

/** A DeviceActivation over a host array (what a device executor's handle looks like to the layer). */
class HostActivation implements DeviceActivation {
  private data: Float32Array | null;
  constructor(data: Float32Array, readonly shape: [number, number]) {
    this.data = data;
  }
  get disposed(): boolean {
    return this.data == null;
  }
  read(): Float32Array {
    if (this.data == null) throw new Error('HostActivation: used after dispose()');
    return this.data.slice();
  }
  toTensor(shape: number[] = this.shape): tf.Tensor {
    return tf.tensor(this.read(), shape, 'float32');
  }
  dispose(): void {
    this.data = null;
  }
}

describe('FusedMoE.applyDevice', () => {
  const H = 12, T = 5;
  const args = {numExperts: 6, topK: 2, moeIntermediateSize: 8};
  let inputs: Array<tf.Tensor2D | DeviceActivation> = [];

  beforeEach(() => {
    inputs = [];
    registerMoeLayerExecutor('cuda', {
      availability: () => ({available: true}),
      forward: (x, w, o) => fusedMoeForward(x, w, o),
      forwardDevice: (x, w, o) => {
        inputs.push(x);
        const [rows, cols] = x instanceof tf.Tensor ? x.shape : x.shape;
        const hostX = x instanceof tf.Tensor ? x.dataSync() as Float32Array : x.read();
        const y = tf.tidy(() => fusedMoeForward(tf.tensor2d(hostX, [rows, cols]), w, o));
        const out = new HostActivation(y.dataSync() as Float32Array, [rows, cols]);
        y.dispose();
        return out;
      }});
  });
  afterEach(() => {
    unregisterMoeLayerExecutor('cuda');
    registerCudaLayerExecutor();
  });

  it('chains layers without host tensors: the result matches the reference applied layer after layer', async () => {
    const rand = rng(61);
    const a = randomLayer({...args, backend: 'cuda'}, H, rand);
    const b = randomLayer({...args, backend: 'cuda'}, H, rand);
    const x = randn(rand, 2 * T * H);
    const xT = tf.tensor(x, [2, T, H]);
    const got = await expectNoLeak(async () => {
      const first = a.layer.applyDevice(xT);
      const second = b.layer.applyDevice(first);
      first.dispose();
      expect(second.shape).toEqual([2 * T, H]);
      const y = second.toTensor([2, T, H]);
      second.dispose();
      expect(y.shape).toEqual([2, T, H]);
      const data = await y.data() as Float32Array;
      y.dispose();
      return data;
    });
    // The layer flattened [B,S,H] to [T,H] for the executor and passed the device activation on as it was.
    expect((inputs[0] as tf.Tensor).shape).toEqual([2 * T, H]);
    expect(inputs[1]).toBeInstanceOf(HostActivation);
    const ref = referenceOutput(b.layer.options, b.data,
        Float32Array.from(referenceOutput(a.layer.options, a.data, x, 2 * T, H)), 2 * T, H);
    expect(relError(got, ref)).toBeLessThan(LAYER_TOLERANCE);
    xT.dispose();
    a.layer.dispose();
    b.layer.dispose();
  });

  it('rejects a wrong input, a disposed activation, a layer with load balancing and a backend without a device path',
     () => {
       const rand = rng(62);
       const {layer} = randomLayer({...args, backend: 'cuda'}, H, rand);
       const wide = new HostActivation(new Float32Array(T * (H + 1)), [T, H + 1]);
       expectThrowsNoLeak(() => layer.applyDevice(wide), /input must be a float32 tf.Tensor or a live DeviceActivation \[T,12\]/);
       const gone = new HostActivation(new Float32Array(T * H), [T, H]);
       gone.dispose();
       expectThrowsNoLeak(() => layer.applyDevice(gone), /got a disposed DeviceActivation/);
       expectThrowsNoLeak(() => layer.applyDevice({} as DeviceActivation), /a live DeviceActivation \[T,12\], got/);
       const ints = tf.zeros([T, H], 'int32');
       expectThrowsNoLeak(() => layer.applyDevice(ints), /input must be a float32 tensor \[T,12\] or \[B,S,12\], got a int32 tensor of shape \[5,12\]/);
       ints.dispose();
       expect(inputs).toEqual([]);
       layer.dispose();

       const balanced = randomLayer({...args, backend: 'cuda', recordExpertLoad: true}, H, rand).layer;
       const x = tf.zeros([T, H]);
       expectThrowsNoLeak(() => balanced.applyDevice(x), /applyDevice does not run load balancing/);
       balanced.dispose();

       const cpu = randomLayer({...args, backend: 'cpu'}, H, rand).layer;
       expectThrowsNoLeak(() => cpu.applyDevice(x),
           /applyDevice needs a backend whose executor keeps activations on its device \(backend 'cuda'\); this layer's backend 'cpu' runs 'kernels:cpu', use apply\(\)/);
       cpu.dispose();
       expect(() => new FusedMoE(args).applyDevice(x)).toThrowError(/the layer is not built yet/);
       x.dispose();
     });

  it('fails with the executor\'s reason when it is unavailable, and when the executor has no device path', () => {
    const rand = rng(63);
    const {layer} = randomLayer({...args, backend: 'cuda'}, H, rand);
    const x = tf.zeros([T, H]);
    registerMoeLayerExecutor('cuda', {availability: () => ({available: false, reason: 'no CUDA device'}),
      forward: () => { throw new Error('must not run'); }});
    expectThrowsNoLeak(() => layer.applyDevice(x), /the CUDA addon is not available: no CUDA device/);
    registerMoeLayerExecutor('cuda', {availability: () => ({available: true}), forward: fusedMoeForward});
    expectThrowsNoLeak(() => layer.applyDevice(x), /this layer's backend 'cuda' runs 'executor:cuda', use apply\(\)/);
    x.dispose();
    layer.dispose();
  });
});
