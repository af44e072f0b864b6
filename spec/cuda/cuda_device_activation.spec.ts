/**
 * The CUDA end-to-end path: device-resident activations passed between consecutive layers (CudaActivation,
 * applyDevice) against the float64 reference applied layer after layer; every host copy path (threaded staging of
 * a large pageable input, a pinned output fed back as input, the pageable path); the routing ids
 * a forward returns (applyWithRouting, the layer executor with needsRouting) against the float64 routing; the tfjs
 * flags MOE_CUDA_PDL and MOE_CUDA_GEMM_TILES (validated everywhere; on the GPU, outputs still match the reference
 * after a change, which re-captures the CUDA graphs). GPU specs pending, with the reason, without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {cudaStatus, FusedMoE, MOE_CUDA_FUSE, MOE_CUDA_GEMM_TILES, MOE_CUDA_PDL} from 'tfjs-moe';
import {CudaActivation, CudaFusedMoe, CudaMoeRunner, CudaMoeWeightTensors, cudaLayerExecutor} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refFusedMoE, RefMoeConfig, RefMoeWeights, refMoeTopkSelect} from '../reference/moe_reference.js';

const status = cudaStatus();

function config(E: number, k: number, I: number): RefMoeConfig {
  return {numExperts: E, topK: k, intermediateSize: I, topkMethod: 'greedy', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null, withBias: false,
    probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
}

function randomWeights(rand: () => number, H: number, c: RefMoeConfig): Record<string, Float32Array> {
  const E = c.numExperts, I = c.intermediateSize;
  return {
    gateWeight: randn(rand, H * E, 2 / Math.sqrt(H)),
    upGateProjWeight: randn(rand, E * H * 2 * I, 1 / Math.sqrt(H)),
    downProjWeight: randn(rand, E * I * H, 1 / Math.sqrt(I)),
  };
}

function toTensors(w: Record<string, Float32Array>): CudaMoeWeightTensors {
  return Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as CudaMoeWeightTensors;
}

function toFloat32(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(a);
}

describe('CUDA tfjs flags', () => {
  it('are registered with their defaults and reject a bad tile choice, naming the flag', () => {
    expect(tf.env().getBool(MOE_CUDA_PDL)).toBe(true);
    expect(tf.env().get(MOE_CUDA_GEMM_TILES)).toBe('default');
    expect(() => tf.env().set(MOE_CUDA_GEMM_TILES, 'fastest')).toThrowError(/MOE_CUDA_GEMM_TILES must be one of default, previous, stream, stream8, mma32, deep, k128, shallow, no-preload, int4-previous, int4-wide, got "fastest"/);
    expect(tf.env().get(MOE_CUDA_GEMM_TILES)).toBe('default');
    expect(tf.env().get(MOE_CUDA_FUSE)).toBe('none');
    expect(() => tf.env().set(MOE_CUDA_FUSE, 'some')).toThrowError(/MOE_CUDA_FUSE must be one of none, all, route, combine, got "some"/);
    expect(tf.env().get(MOE_CUDA_FUSE)).toBe('none');
  });
});

describe('CUDA end to end: device-resident activations, pinned copies, routing ids', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  it('three layers chained on the GPU match the reference applied layer after layer; one upload, one download', async () => {
    const H = 64, T = 37, rand = rng(9100);
    const cfgs = [config(8, 2, 32), config(6, 3, 24), config(8, 1, 40)];
    const ws = cfgs.map(c => randomWeights(rand, H, c));
    const weights = ws.map(toTensors);
    const layers = cfgs.map(c => new CudaFusedMoe({hidden: H, ...c, computeDtype: 'float32'}));
    const x = randn(rand, T * H);
    let ref: ArrayLike<number> = x;
    for (let l = 0; l < 3; l++) ref = refFusedMoE(toFloat32(ref), T, H, ws[l] as unknown as RefMoeWeights, cfgs[l]);
    const xT = tf.tensor2d(x, [T, H]);
    const before = tf.memory().numTensors;
    // The second call replays the captured graphs; the third copies into and out of them by cudaMemcpyAsync
    // (TFJS_MOE_CUDA_DEVICE_COPY=memcpy, the A/B of the default copy kernel).
    try {
      for (let call = 0; call < 3; call++) {
        if (call === 2) process.env.TFJS_MOE_CUDA_DEVICE_COPY = 'memcpy';
        let act = layers[0].applyDevice(xT, weights[0]);
        for (let l = 1; l < 3; l++) {
          const next = layers[l].applyDevice(act, weights[l]);
          act.dispose();
          act = next;
        }
        expect(act.shape).toEqual([T, H]);
        const got = act.read();
        const out = act.toTensor([T, H]);
        act.dispose();
        expect(act.disposed).toBe(true);
        expect(() => act.read()).toThrowError(/CudaActivation: used after dispose\(\)/);
        const err = relError(got, ref);
        recordError('cuda device-resident chain float32', err);
        expect(err).withContext(`call ${call}`).toBeLessThan(1e-4);
        expect(relError(await out.data(), ref)).toBeLessThan(1e-4);
        out.dispose();
      }
    } finally {
      delete process.env.TFJS_MOE_CUDA_DEVICE_COPY;
    }
    expect(tf.memory().numTensors).toBe(before);
    xT.dispose();
    layers.forEach(l => l.dispose());
    weights.forEach(w => tf.dispose(Object.values(w) as tf.Tensor[]));
  });

  it('device-resident forwards: the default path equals synchronous uploads and DMA copies bit for bit as T ' +
     'changes and activations move; an upload (not waited for) keeps its values when the caller overwrites x at ' +
     'once; small and large downloads (mapped block or DMA) agree', () => {
    const H = 128, rand = rng(9150);
    const cfg = config(8, 2, 32);
    const ws = [randomWeights(rand, H, cfg), randomWeights(rand, H, cfg)];
    const runners = ws.map(w => new CudaMoeRunner({hidden: H, ...cfg, computeDtype: 'float32'}, w));
    try {
      for (const T of [1, 5, 300, 2, 300, 1]) {
        const x = randn(rand, T * H);
        const xCopy = x.slice();
        const chain = (env: Record<string, string>) => {
          for (const [k, v] of Object.entries(env)) process.env[k] = v;
          try {
            const outs: Float32Array[] = [];
            for (let call = 0; call < 3; call++) {  // capture, replay, replay with other activations
              const src = x.slice();
              const up = CudaActivation.fromHost(src, T, H);
              src.fill(Number.NaN);  // the upload must have taken its copy already
              const mid = runners[0].forwardDevice(up).output;
              const y = runners[1].forwardDevice(mid).output;
              up.dispose();
              mid.dispose();
              outs.push(y.read());
              y.dispose();
            }
            return outs;
          } finally {
            for (const k of Object.keys(env)) delete process.env[k];
          }
        };
        const launches = chain({TFJS_MOE_CUDA_UPLOAD_SYNC: '1', TFJS_MOE_CUDA_MAPPED_KIB: '0'});
        const byDefault = chain({});
        for (let call = 0; call < 3; call++) {
          expect(byDefault[call]).withContext(`T ${T} call ${call}`).toEqual(launches[call]);
          expect(launches[call]).withContext(`T ${T} call ${call} vs call 0`).toEqual(launches[0]);
        }
        const ref = refFusedMoE(toFloat32(refFusedMoE(x, T, H, ws[0] as unknown as RefMoeWeights, cfg)), T, H,
                                ws[1] as unknown as RefMoeWeights, cfg);
        const err = relError(byDefault[2], ref);
        recordError('cuda device chain float32', err);
        expect(err).withContext(`T ${T}`).toBeLessThan(1e-4);
        expect(x).toEqual(xCopy);
      }
    } finally {
      runners.forEach(r => r.dispose());
    }
  });

  it('FusedMoE.applyDevice: a stack of three layers on the GPU matches the reference; a large activation reads back',
     async () => {
       const H = 512, T = 700, rand = rng(9150);  // 1.4 MB activations: the chunked upload and download
       const args = {numExperts: 8, topK: 2, moeIntermediateSize: 32, backend: 'cuda' as const};
       const c = config(8, 2, 32);
       const ws = [0, 1, 2].map(() => randomWeights(rand, H, c));
       const layers = ws.map(w => {
         const layer = new FusedMoE({...args, kernelInitializer: 'zeros'}).buildFor(H);
         const values = {gate_weight: tf.tensor2d(w.gateWeight, [H, 8]),
           up_gate_proj_weight: tf.tensor3d(w.upGateProjWeight, [8, H, 64]),
           down_proj_weight: tf.tensor3d(w.downProjWeight, [8, 32, H])};
         layer.setNamedWeights(values);
         tf.dispose(Object.values(values));
         return layer;
       });
       const x = randn(rand, T * H);
       let ref: ArrayLike<number> = x;
       for (const w of ws) ref = refFusedMoE(toFloat32(ref), T, H, w as unknown as RefMoeWeights, c);
       const xT = tf.tensor3d(x, [1, T, H]);
       const before = tf.memory().numTensors;
       for (let call = 0; call < 2; call++) {
         let act = layers[0].applyDevice(xT);
         for (const layer of layers.slice(1)) {
           const next = layer.applyDevice(act);
           act.dispose();
           act = next;
         }
         expect(act).toBeInstanceOf(CudaActivation);
         expect(act.shape).toEqual([T, H]);
         const y = act.toTensor([1, T, H]);
         act.dispose();
         const err = relError(await y.data(), ref);
         recordError('cuda FusedMoE.applyDevice stack float32', err);
         expect(err).withContext(`call ${call}`).toBeLessThan(1e-4);
         y.dispose();
       }
       // The same layers through apply() (host tensors between layers) give the same values.
       let host: tf.Tensor = xT;
       for (const layer of layers) {
         const next = layer.apply(host) as tf.Tensor;
         if (host !== xT) host.dispose();
         host = next;
       }
       expect(relError(await host.data(), ref)).toBeLessThan(1e-4);
       host.dispose();
       expect(tf.memory().numTensors).toBe(before);
       xT.dispose();
       layers.forEach(l => l.dispose());
     });

  it('rejects an activation of the wrong width and a non-activation, naming the argument', () => {
    const H = 16, c = config(4, 2, 8);
    const w = toTensors(randomWeights(rng(3), H, c));
    const layer = new CudaFusedMoe({hidden: H, ...c});
    const wrong = CudaActivation.fromHost(new Float32Array(3 * 8), 3, 8);
    expect(() => layer.applyDevice(wrong, w)).toThrowError(/argument 'x' must be a CudaActivation \[T, 16\], got \[3,8\]/);
    expect(() => layer.applyDevice({} as CudaActivation, w)).toThrowError(/argument 'x' must be a CudaActivation/);
    expect(() => CudaActivation.fromTensor(tf.tensor1d([1], 'int32'))).toThrowError(/argument 'x' must be a float32 tensor/);
    wrong.dispose();
    layer.dispose();
    tf.dispose(Object.values(w) as tf.Tensor[]);
  });

  it('every host copy path (staged, pinned output fed back as input, pageable) matches the reference', async () => {
    // 600 x 512 float32 = 1.2 MB: past the single-copy threshold, so the input goes through the threaded staging.
    const H = 512, T = process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 300 : 600, rand = rng(9200);
    const c = config(8, 2, 48);
    const w = randomWeights(rand, H, c);
    const weights = toTensors(w);
    const layer = new CudaFusedMoe({hidden: H, ...c});
    const x = randn(rand, T * H);
    const ref1 = refFusedMoE(x, T, H, w as unknown as RefMoeWeights, c);
    const ref2 = refFusedMoE(toFloat32(ref1), T, H, w as unknown as RefMoeWeights, c);
    const xT = tf.tensor2d(x, [T, H]);
    const y1 = layer.apply(xT, weights);
    const y2 = layer.apply(y1, weights);
    expect(relError(await y1.data(), ref1)).toBeLessThan(1e-4);
    const err = relError(await y2.data(), ref2);
    recordError('cuda staged round trip float32', err);
    expect(err).toBeLessThan(1e-4);
    tf.dispose([xT, y1, y2]);
    layer.dispose();
    tf.dispose(Object.values(weights) as tf.Tensor[]);
    const runner = new CudaMoeRunner({hidden: H, ...c}, w);
    const pinned = runner.forwardWithRouting(x, T, {output: 'pinned'}).output;
    expect(relError(pinned, ref1)).toBeLessThan(1e-4);
    // `pinned` is page-locked memory: copied to the GPU directly.
    expect(relError(runner.forwardWithRouting(pinned, T, {output: 'pageable'}).output, ref2)).toBeLessThan(1e-4);
    expect(() => runner.forwardWithRouting(x, T, {output: 'fast' as 'staged'}))
        .toThrowError(/argument 'output' must be 'staged', 'pinned' or 'pageable', got 'fast'/);
    runner.dispose();
  });

  it('returns the routing ids it used: they match the float64 routing, through applyWithRouting and the executor', async () => {
    const H = 48, T = 29, rand = rng(9300);
    const c = config(16, 4, 24);
    const w = randomWeights(rand, H, c);
    const weights = toTensors(w);
    const x = randn(rand, T * H);
    const logits = new Float64Array(T * c.numExperts);
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < c.numExperts; e++) {
        let acc = 0;
        for (let h = 0; h < H; h++) acc += x[t * H + h] * w.gateWeight[h * c.numExperts + e];
        logits[t * c.numExperts + e] = acc;
      }
    }
    const refIds = refMoeTopkSelect(logits, T, c.numExperts, null, c.topK, true).ids;
    const sortedRows = (ids: ArrayLike<number>) => Array.from({length: T}, (_, t) =>
        Array.from(ids).slice(t * c.topK, (t + 1) * c.topK).sort((a, b) => a - b));
    const layer = new CudaFusedMoe({hidden: H, ...c});
    const xT = tf.tensor2d(x, [T, H]);
    const r = layer.applyWithRouting(xT, weights, {wantIds: true});
    expect(r.topkIds!.shape).toEqual([T, c.topK]);
    expect(r.topkIds!.dtype).toBe('int32');
    expect(sortedRows(await r.topkIds!.data())).toEqual(sortedRows(refIds));
    expect(layer.applyWithRouting(xT, weights).topkIds).toBeUndefined();
    tf.dispose([r.output, r.topkIds!]);
    layer.dispose();
    // The layer executor returns the ids when the caller reads the routing (needsRouting).
    const owner = {};
    // The resolved options of a layer of this shape (every option at its default), as the layer hands them over.
    const optionsLayer = new FusedMoE({numExperts: c.numExperts, topK: c.topK, moeIntermediateSize: c.intermediateSize,
      backend: 'cuda'});
    const options = optionsLayer.options as Parameters<typeof cudaLayerExecutor.forward>[2];
    const layerWeights = {gate_weight: tf.tensor2d(w.gateWeight, [H, c.numExperts]),
      up_gate_proj_weight: tf.tensor3d(w.upGateProjWeight, [c.numExperts, H, 2 * c.intermediateSize]),
      down_proj_weight: tf.tensor3d(w.downProjWeight, [c.numExperts, c.intermediateSize, H])} as
      unknown as Parameters<typeof cudaLayerExecutor.forward>[1];
    const res = cudaLayerExecutor.forward(xT, layerWeights, options, {owner, needsRouting: true});
    const {output, topkIds} = res instanceof tf.Tensor ? {output: res, topkIds: undefined} : res;
    expect(topkIds).toBeDefined();
    expect(sortedRows(await topkIds!.data())).toEqual(sortedRows(refIds));
    expect(relError(await output.data(), refFusedMoE(x, T, H, w as unknown as RefMoeWeights, c))).toBeLessThan(1e-4);
    tf.dispose([output, topkIds!]);
    cudaLayerExecutor.release!(owner);
    tf.dispose([xT, ...Object.values(layerWeights) as tf.Tensor[], ...Object.values(weights) as tf.Tensor[]]);
  });

  it('MOE_CUDA_PDL off and MOE_CUDA_GEMM_TILES previous: the same layer still matches the reference (graphs re-captured)',
     async () => {
       const H = 256, rand = rng(9400);
       const c = config(16, 4, 128);
       const w = randomWeights(rand, H, c);
       const weights = toTensors(w);
       const layer = new CudaFusedMoe({hidden: H, ...c, computeDtype: 'bfloat16'});
       const env = tf.env();
       try {
         for (const T of [1, 200]) {
           const x = randn(rand, T * H);
           const ref = refFusedMoE(x, T, H, w as unknown as RefMoeWeights, c);
           const xT = tf.tensor2d(x, [T, H]);
           for (const [pdl, tiles] of [[true, 'default'], [false, 'previous'], [true, 'default']] as const) {
             env.set(MOE_CUDA_PDL, pdl);
             env.set(MOE_CUDA_GEMM_TILES, tiles);
             for (let call = 0; call < 2; call++) {
               const out = layer.apply(xT, weights);
               expect(relError(await out.data(), ref)).withContext(`T ${T} pdl ${pdl} tiles ${tiles}`).toBeLessThan(3e-2);
               out.dispose();
             }
           }
           xT.dispose();
         }
       } finally {
         env.set(MOE_CUDA_PDL, true);
         env.set(MOE_CUDA_GEMM_TILES, 'default');
         layer.dispose();
         tf.dispose(Object.values(weights) as tf.Tensor[]);
       }
     });
});
