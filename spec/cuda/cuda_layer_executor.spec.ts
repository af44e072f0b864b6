/**
 * FusedMoE with backend 'cuda' (the executor this package registers on the layer's hook): the layer conformance
 * suite against the float64 reference in float32, parity with the cpu kernels and the reference in bfloat16 and
 * float16 (bounds as in cuda_fused_moe.spec.ts), weight re-upload after setNamedWeights, release on dispose.
 * Without CUDA: a clear error naming the reason, no leak. (GPU specs pending, with the reason, without CUDA.)
 */
import * as tf from '@tensorflow/tfjs-core';
import {CudaComputeDtype, cudaStatus, FusedMoE} from 'tfjs-moe';
import {registerCudaLayerExecutor} from 'tfjs-moe/internal';

import {expectThrowsNoLeak, randn, recordError, relError, rng} from '../helpers/util.js';
import {describeLayerConformance} from '../layers/layer_conformance.js';
import {applyAndRead, randomLayer, referenceOutput} from '../layers/layer_util.js';

const status = cudaStatus();
const unavailable = status.available ? null : `CUDA unavailable (${status.code}): ${status.reason}`;

describe('FusedMoE backend cuda', () => {
  beforeAll(() => registerCudaLayerExecutor());  // other specs may have replaced it

  it('without CUDA: apply throws naming the reason, leaking nothing', () => {
    if (status.available) pending('CUDA is available here');
    const {layer} = randomLayer({numExperts: 4, topK: 2, moeIntermediateSize: 3, backend: 'cuda'}, 5, rng(1));
    const x = tf.ones([2, 5]);
    expectThrowsNoLeak(() => layer.apply(x), /backend 'cuda' requested but the CUDA addon is not available: .*\((addon-not-built|no-driver|no-device|addon-load-failed|not-node|node-too-old|cuda-error)\)/);
    x.dispose();
    layer.dispose();
  });

  const BOUND: Record<CudaComputeDtype, number> = {float32: 1e-4, bfloat16: 3e-2, float16: 5e-3};
  for (const dtype of ['float32', 'bfloat16', 'float16'] as CudaComputeDtype[]) {
    it(`matches the reference and the cpu kernels in ${dtype}; re-uploads after setNamedWeights; releases on dispose`,
       async () => {
         if (unavailable) pending(unavailable);
         {
           const rand = rng(500);
           const H = 24, T = 11;
           const args = {numExperts: 8, topK: 2, moeIntermediateSize: 16, withBias: true, probInAdvance: true,
             sharedExpertIntermediateSize: 8, sharedExpertGate: true};
           const {layer, data} = randomLayer({...args, backend: 'cuda', computeDtype: dtype}, H, rand);
           const cpu = new FusedMoE({...args, backend: 'cpu'}).buildFor(H);
           cpu.setNamedWeights(layer.namedWeights());
           const x = randn(rand, T * H);
           const ref = referenceOutput(layer.options, data, x, T, H);
           const before = tf.memory().numTensors;
           const y = await applyAndRead(layer, x, [T, H]);
           const yCpu = await applyAndRead(cpu, x, [T, H]);
           expect(tf.memory().numTensors).toBe(before);
           const err = relError(y, ref);
           recordError(`cuda FusedMoE layer ${dtype}`, err);
           expect(err).toBeLessThan(BOUND[dtype]);
           expect(relError(y, yCpu)).toBeLessThan(BOUND[dtype] + 1e-4);
           // New weights: the next call must upload them.
           const down = randn(rand, data.down_proj_weight.length, 0.4);
           const downT = tf.tensor(down, layer.namedWeights().down_proj_weight!.shape);
           layer.setNamedWeights({down_proj_weight: downT});
           downT.dispose();
           const y2 = await applyAndRead(layer, x, [T, H]);
           expect(relError(y2, referenceOutput(layer.options, {...data, down_proj_weight: down}, x, T, H)))
               .toBeLessThan(BOUND[dtype]);
           layer.dispose();
           cpu.dispose();
         }
       });
  }
});

describeLayerConformance('cuda executor, float32', {
  backend: 'cpu', layerBackend: 'cuda',
  init: async () => {
    if (unavailable) return unavailable;
    registerCudaLayerExecutor();
    return null;
  },
});
