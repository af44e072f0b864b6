/**
 * CUDA benchmark of one Qwen3-30B-A3B MoE layer (H 2048, I 768, E 128, k 8, softmax top-k, renormalised) at
 * T = 1, 16, 256, 4096 in float32 and bfloat16:
 *  - kernel time of the whole layer (CUDA events around the native forward, x resident), CUDA-graph replay and
 *    plain stream launches, median over iterations;
 *  - end-to-end time through tfjs (tensor -> host data -> upload -> forward -> download -> tensor), median, with
 *    where the time goes (dataSync, the native call's host-side upload, its wait for kernels + download, the output
 *    tensor), for: the copy path from before pinned staging ('pageable'), pinned staging both ways with a pageable
 *    tfjs input ('staged', the default), the output downloaded into a new pinned block ('pinned'), a pinned input
 *    (a previous forward's pinned output, 'pinnedIn'), and A/B switches of the staged path: 'trace' (GPU events:
 *    upload, kernels, download), 'oldSplit' (one copy slice per thread), 'smallPageable' (small inputs straight
 *    from pageable memory), 'noHugePages' (no transparent huge pages asked for on a large output array), 'prefaultLate' (the output's
 *    page faults taken from the download on, not from the start), 'prefault16' / 'prefault4' (threads for them),
 *    'chunk64' / 'chunk128' / 'chunk256' / 'chunk4096' (the copies' chunk in KiB), 'registerIn' / 'registerOut' / 'registerInOut' (x / y
 *    page-locked for the call and copied by DMA directly), 'slice128' (a copy thread per 128 KiB, not 512),
 *    'pool' (the opt-in output pool: TFJS_MOE_CUDA_OUTPUT_POOL_MIB=256), 'noOverlap' / 'traceNoOverlap' (the
 *    copy-out waits for the whole prefault of a large output first, as before), 'pool64' (the same from 64 KiB, not 1 MiB),
 *    'ntStores' / 'plainStores' (x staged with non-temporal / plain stores at every size; the default: non-temporal
 *    above 1 MiB), 'stagedB' / 'plainStoresB' (repeats, for the noise), 'slice1024' / 'slice2048' (a copy thread
 *    per 1 / 2 MiB), 'slice2048nt' (2 MiB per thread, non-temporal at every size), 'prefaultHuge' /
 *    'prefaultHuge16' (the prefault's threads take aligned 2 MiB blocks; on 8 / 16 threads); 'noMapped' /
 *    'traceNoMapped' (small forwards through DMAs, not the mapped blocks; without / with the trace), 'mapped4M'
 *    (the mapped blocks up to 4 MiB, T <= 512), 'spin100' / 'spin0' / 'traceSpin0' (idle copy helpers poll
 *    100 / 0 us before they sleep; the default 300), 'split' / 'splitSpin0' / 'traceSplit' (forwardStart, the
 *    output tensor, forwardFinish), 'slice512' / 'slice256' (a copy thread per 512 / 256 KiB), 'fine' /
 *    'splitFine' (chunks of 128 KiB), 'old' / 'traceOld' (session 7's host defaults that remain switches: no
 *    polling, 512 KiB per copy thread); --rounds R repeats the modes R times, interleaved; --stack-modes
 *    default,noMapped,uploadSync,spin0,old,before: the device stack again under those switches (small downloads
 *    through a mapped block or a DMA; uploads not waited for or waited for; helpers that sleep at once; session 7's
 *    host defaults; the first three as in session 6), interleaved over the rounds; --layer-modes
 *    default,noSplit,spin0,old: the layer paths below under those switches (the split forward off; helpers that
 *    sleep at once; session 7's host defaults: split off, no polling, 512 KiB per copy thread);
 *    'layerApply':
 *    CudaFusedMoe.apply(tensor) -> tensor, the path of the FusedMoE layer's cuda executor; 'fusedMoE': the
 *    FusedMoE layer's apply() with backend 'cuda' (and the part of it inside the cuda executor's forward);
 *  - a stack of --stack FusedMoE layers (their own GPU weights): apply() layer after layer (host tensors between
 *    layers) and applyDevice() (one upload, the layers on the GPU, one download), and its target:
 *    layers * kernel + the one-layer copy allowance;
 *  - the host<->device link (pinned and pageable copies of 32 MiB) and the end-to-end target per T:
 *    kernel + 2 * (bytes(x) / H2D + bytes(y) / D2H) at the pinned speeds;
 *  - the floor: max(bytes / 4.15 TB/s, flops / 770 TFLOP/s) (H200, ../shared/device/README.md), bytes = the
 *    weights of the experts a uniform router is expected to hit (E * (1 - (1 - k/E)^T)) + router + x + out.
 * Usage: node cuda_bench.js [--out file.json] [--dtypes float32,bfloat16] [--tokens 1,16,256,4096] [--iters 20]
 *   [--e2e-iters 15] [--layer-warmup 40] (untimed calls of the layer paths and the stack first; 4 at T >= 1024)
 *   [--stack 4] [--modes staged,pageable,...] [--flags '{"MOE_CUDA_PDL": false, "MOE_CUDA_GEMM_TILES": "previous"}'] (tfjs flags, for A/B)
 *   [--kernel-only] (kernel times and stage profile only: for A/B runs) [--ab '[{"MOE_CUDA_FUSE": "none"}, ...]']
 *   (with --kernel-only: each flag set's kernel times too, same weights; 'env:NAME' keys set environment variables)
 *   [--ab-stages] (with --ab: each flag set's stage profile too)
 *   [--ncu] (with --kernel-only: one eager
 *   forward and one graph replay per T, nothing else: what ncu profiles)
 * The end-to-end parts per mode: dataSync, the native call (alloc = its output arrays, uploadHost, wait = kernels +
 * the sliced download with the output's page faults and copy-out overlapped), the output tensor, and gc = V8
 * garbage-collection time per call during that mode's loop (PerformanceObserver 'gc' entries).
 */
import * as tf from '@tensorflow/tfjs-core';
// A named import: a bare side-effect import is dropped by bundlers (the package lists its side-effect files).
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {writeFileSync} from 'node:fs';
import {PerformanceObserver, performance} from 'node:perf_hooks';
import {CudaComputeDtype, cudaStatus, FusedMoE, registerMoeLayerExecutor} from 'tfjs-moe';
import {CudaActivation, CudaFusedMoe, CudaMoeRunner, CudaMoeWeightTensors, cudaLayerExecutor} from 'tfjs-moe/internal';

import {findModelShape} from '../demo/model_shapes.js';
import {median} from './stats.js';
import {arg, uniform} from './bench_data.js';

// Qwen3-30B-A3B's layer from the shared model table (demo/model_shapes.js).
const {hidden: H, intermediate: I, numExperts: E, topK: K} = findModelShape('qwen3')!;
const BANDWIDTH = 4.15e12, BF16_FLOPS = 770e12;


/**
 * 'int4' below: bfloat16 compute with int4 experts (group 32, symmetric): codes + float32 scales per weight. 'int8':
 * bfloat16 compute with int8 experts, one scale per column (the format's default); 'int8-g32': groups of 32;
 * 'mxfp4': bfloat16 compute with mxfp4 experts (E2M1 codes, an E8M0 scale per 32; the floor counts the format's
 * 0.53 bytes per weight, the GPU reads its scales as float32: 0.625).
 */
type BenchDtype = CudaComputeDtype | 'int4' | 'int8' | 'int8-g32' | 'mxfp4';
const INT4_GROUP = 32;
const int8Group = (dtype: BenchDtype, Kd: number) => dtype === 'int8-g32' ? 32 : Kd;
const T1_BYTES = H * 4;

function floorMs(T: number, dtype: BenchDtype) {
  const eb = dtype === 'float32' ? 4 : dtype === 'int4' ? 0.5 + 4 / INT4_GROUP : dtype === 'int8' ? 1 + (8 * I + 4 * H) / (3 * H * I) :
      dtype === 'int8-g32' ? 1 + 4 / 32 : dtype === 'mxfp4' ? 0.5 + 1 / 32 : 2;
  const activeExperts = E * (1 - Math.pow(1 - K / E, T));
  const bytes = activeExperts * 3 * H * I * eb + H * E * 4 + 2 * T * H * 4;
  const flops = 2 * T * K * 3 * H * I + 2 * T * H * E;
  return {activeExperts, bytes, flops, floorMs: Math.max(bytes / BANDWIDTH, flops / BF16_FLOPS) * 1e3};
}

/**
 * Random int4 codes and scales of an [E, Kd, N] weight (group INT4_GROUP along Kd, zero 8); writes the dequantized
 * values into `dequantized` (docs/formats.md: w = s * (c - 8)).
 */
function int4Weight(dequantized: Float32Array, Kd: number, N: number, seed: number, decode = true) {
  const kw = Kd / 8, G = Kd / INT4_GROUP;
  const codes = new Int32Array(E * kw * N);
  let s = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < codes.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    codes[i] = s | 0;
  }
  const scales = uniform(E * G * N, Math.sqrt(3 / Kd) / 7, seed + 1).map(Math.abs);
  for (let e = 0; decode && e < E; e++) {
    for (let w = 0; w < kw; w++) {
      for (let n = 0; n < N; n++) {
        const word = codes[(e * kw + w) * N + n];
        const scale = scales[(e * G + ((8 * w / INT4_GROUP) | 0)) * N + n];  // a word's 8 codes share a group
        const base = (e * Kd + 8 * w) * N + n;
        for (let j = 0; j < 8; j++) dequantized[base + j * N] = scale * (((word >>> (4 * j)) & 15) - 8);
      }
    }
  }
  return {codes, scales, zeroPoints: null, groupSize: INT4_GROUP};
}

/**
 * Random int8 codes in [-127, 127] and scales of an [E, Kd, N] weight (groups of `group` along Kd); writes the
 * dequantized values into `dequantized` (docs/formats.md: w = s * q).
 */
function int8Weight(dequantized: Float32Array, Kd: number, N: number, group: number, seed: number) {
  const kw = Kd / 4, G = Kd / group;
  const codes = new Int32Array(E * kw * N);
  let s = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < codes.length; i++) {
    let word = 0;
    for (let b = 0; b < 4; b++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      word |= ((s % 255) - 127 & 255) << (8 * b);
    }
    codes[i] = word;
  }
  const scales = uniform(E * G * N, Math.sqrt(3 / Kd) / 127, seed + 1).map(Math.abs);
  for (let e = 0; e < E; e++) {
    for (let w = 0; w < kw; w++) {
      for (let n = 0; n < N; n++) {
        const word = codes[(e * kw + w) * N + n];
        const scale = scales[(e * G + ((4 * w / group) | 0)) * N + n];  // a word's 4 codes share a group
        const base = (e * Kd + 4 * w) * N + n;
        for (let j = 0; j < 4; j++) dequantized[base + j * N] = Math.fround(scale * ((word << (24 - 8 * j)) >> 24));
      }
    }
  }
  return {codes, scales, groupSize: group};
}

/**
 * Random mxfp4 codes and E8M0 scales (2^-8 or 2^-7 per block, about the uniform weights' range over E2M1's 6) of an
 * [E, Kd, N] weight; writes the dequantized values (docs/formats.md: w = E2M1(c) * 2^(b - 127)).
 */
function mxfp4Weight(dequantized: Float32Array, Kd: number, N: number, seed: number) {
  const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
  const kw = Kd / 8, G = Kd / 32, nw = Math.ceil(N / 4);
  const codes = int4Weight(new Float32Array(0), Kd, N, seed, false).codes;
  const scales = new Int32Array(E * G * nw);
  let s = (seed + 7) * 2654435761 >>> 0 || 1;
  for (let i = 0; i < scales.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    scales[i] = 0x77777777 + (s & 0x01010101);  // bytes 119 or 120
  }
  for (let e = 0; e < E; e++) {
    for (let w = 0; w < kw; w++) {
      for (let n = 0; n < N; n++) {
        const word = codes[(e * kw + w) * N + n];
        const b = (scales[(e * G + ((w / 4) | 0)) * nw + (n >> 2)] >>> (8 * (n & 3))) & 255;
        const scale = 2 ** (b - 127);
        const base = (e * Kd + 8 * w) * N + n;
        for (let j = 0; j < 8; j++) dequantized[base + j * N] = E2M1[(word >>> (4 * j)) & 15] * scale;
      }
    }
  }
  return {codes, scales};
}

/** Milliseconds spent inside the cuda layer executor's forward during the last FusedMoE call (timing wrapper). */
let executorMs = 0;
function timeCudaExecutor(): void {
  registerMoeLayerExecutor('cuda', {...cudaLayerExecutor, forward: (x, w, o, c) => {
    const t0 = performance.now();
    try {
      return cudaLayerExecutor.forward(x, w, o, c);
    } finally {
      executorMs += performance.now() - t0;
    }
  }, forwardDevice: (x, w, o, c) => {
    const t0 = performance.now();
    try {
      return cudaLayerExecutor.forwardDevice!(x, w, o, c);
    } finally {
      executorMs += performance.now() - t0;
    }
  }});
}

async function main() {
  const status = cudaStatus();
  console.log(JSON.stringify(status));
  if (!status.available) throw new Error(`CUDA unavailable: ${status.reason}`);
  console.log(`tfjs-backend-cpu ${version_cpu}`);
  await tf.setBackend('cpu');
  timeCudaExecutor();
  for (const [name, value] of Object.entries(JSON.parse(arg('flags', '{}')) as Record<string, number | boolean | string>)) {
    tf.env().set(name, value);
  }
  const dtypes = arg('dtypes', 'float32,bfloat16').split(',') as BenchDtype[];
  const tokens = arg('tokens', '1,16,256,4096').split(',').map(Number);
  const iters = Number(arg('iters', '20'));
  const e2eIters = Number(arg('e2e-iters', '15'));
  const stackSize = Number(arg('stack', '4'));
  // Untimed calls of the layer paths and the stack before their timed ones (fewer at large T, where a call is long).
  const layerWarmup = Number(arg('layer-warmup', '40'));
  const warmCalls = (T: number) => T >= 1024 ? Math.min(layerWarmup, 4) : layerWarmup;
  // Timed calls per loop of the copy modes and the layer paths: 4x at T <= 16, where a call is short and its
  // median moves by several microseconds between loops of --e2e-iters (H200 session 8 batch B1).
  const itersAt = (T: number) => T <= 16 ? 4 * e2eIters : e2eIters;
  const rounds = Math.max(1, Number(arg('rounds', '1')));
  const stackModes = arg('stack-modes', '').split(',').filter(m => m !== '');
  const layerModes = arg('layer-modes', 'default').split(',').filter(m => m !== '');
  const modes = arg('modes', 'staged,pageable,pinnedIn,trace,oldSplit,registerIn,registerOut,registerInOut').split(',');
  const latency = CudaMoeRunner.hostCopyBandwidth(T1_BYTES, 50);
  console.log(`host<->device, ${T1_BYTES} B (one T = 1 row), GB/s: ${JSON.stringify(latency)}`);
  const kernelOnly = process.argv.includes('--kernel-only');
  const abVariants = JSON.parse(arg('ab', '[]')) as Array<Record<string, number | boolean | string>>;
  const ncuMode = process.argv.includes('--ncu');
  const abStages = process.argv.includes('--ab-stages');
  const gcEntries: Array<{start: number, duration: number}> = [];
  const gcObserver = new PerformanceObserver(list => {
    for (const e of list.getEntries()) gcEntries.push({start: e.startTime, duration: e.duration});
  });
  gcObserver.observe({entryTypes: ['gc']});
  const gcMsIn = async (from: number, to: number, calls: number) => {
    await new Promise(r => setImmediate(r));  // the observer's entries arrive asynchronously
    return gcEntries.filter(e => e.start >= from && e.start < to).reduce((a, e) => a + e.duration, 0) / calls;
  };
  const link = CudaMoeRunner.hostCopyBandwidth(32 << 20, 10);
  console.log(`host<->device, 32 MiB, GB/s: ${JSON.stringify(link)}`);
  const t0 = performance.now();
  const weights = {
    gateWeight: uniform(H * E, Math.sqrt(3 / H), 1),
    upGateProjWeight: uniform(E * H * 2 * I, Math.sqrt(3 / H), 2),
    downProjWeight: uniform(E * I * H, Math.sqrt(3 / I), 3),
  };
  console.log(`weights generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const results: Record<string, unknown>[] = [];
  for (const dtype of dtypes) {
    const quantized = dtype === 'int4' || dtype === 'int8' || dtype === 'int8-g32' || dtype === 'mxfp4';
    const compute: CudaComputeDtype = quantized ? 'bfloat16' : dtype as CudaComputeDtype;
    // int4 / int8: random codes and scales; the float32 weights are overwritten with their dequantized values (the
    // copy the other paths read), so the packed dtypes go last in --dtypes.
    const int4 = dtype === 'int4' ? {upGateProjInt4: int4Weight(weights.upGateProjWeight, H, 2 * I, 11),
      downProjInt4: int4Weight(weights.downProjWeight, I, H, 12)} :
        dtype === 'int8' || dtype === 'int8-g32' ?
        {upGateProjInt8: int8Weight(weights.upGateProjWeight, H, 2 * I, int8Group(dtype, H), 13),
          downProjInt8: int8Weight(weights.downProjWeight, I, H, int8Group(dtype, I), 14)} :
        dtype === 'mxfp4' ? {upGateProjMxfp4: mxfp4Weight(weights.upGateProjWeight, H, 2 * I, 15),
          downProjMxfp4: mxfp4Weight(weights.downProjWeight, I, H, 16)} : {};
    const u0 = performance.now();
    const runner = new CudaMoeRunner({hidden: H, numExperts: E, topK: K, intermediateSize: I, computeDtype: compute},
                                     {...weights, ...int4});
    const uploadMs = performance.now() - u0;
    // The tensor-level wrapper the FusedMoE layer's cuda executor calls (weights as tensors, checked per call).
    const weightTensors = Object.fromEntries(Object.entries(weights).map(([n, v]) => [n, tf.tensor1d(v)])) as
        CudaMoeWeightTensors;
    const layerMoe = kernelOnly ? null :
        new CudaFusedMoe({hidden: H, numExperts: E, topK: K, intermediateSize: I, computeDtype: compute});
    // FusedMoE layers (backend 'cuda') over the same weight tensors: each uploads its own GPU copy on first use.
    const layerWeights = {gate_weight: tf.tensor2d(weights.gateWeight, [H, E]),
      up_gate_proj_weight: tf.tensor3d(weights.upGateProjWeight, [E, H, 2 * I]),
      down_proj_weight: tf.tensor3d(weights.downProjWeight, [E, I, H])};
    const stack = kernelOnly || quantized ? [] : Array.from({length: Math.max(1, stackSize)}, (_, l) => {
      const layer = new FusedMoE({numExperts: E, topK: K, moeIntermediateSize: I, backend: 'cuda', computeDtype: compute,
        kernelInitializer: 'zeros', name: `moe_stack_${l}`}).buildFor(H);
      layer.setNamedWeights(layerWeights);
      return layer;
    });
    for (const T of tokens) {
      const x = uniform(T * H, 1, 100 + T);
      if (ncuMode) {
        runner.benchmark(x, T, {warmup: 0, iters: 1, useGraph: true});
        console.log(`ncu: T=${T} done`);
        continue;
      }
      const graph = runner.benchmark(x, T, {warmup: 5, iters, useGraph: true});
      const stream = runner.benchmark(x, T, {warmup: 3, iters, useGraph: false});
      if (kernelOnly) {
        const fl = floorMs(T, dtype);
        const row = {dtype, T, kernelGraphMs: median(graph), kernelStreamMs: median(stream), ...fl,
          ratioToFloor: median(graph) / fl.floorMs, stages: runner.profile(x, T, 10)};
        results.push(row);
        console.log(`kernel-only ${dtype} T=${T}: graph ${row.kernelGraphMs.toFixed(4)} ms, stream ${row.kernelStreamMs.toFixed(4)} ms, ` +
                    `floor ${row.floorMs.toFixed(4)}; ${Object.entries(row.stages).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
        // --ab: more flag sets measured on the same runner (one weight upload for all), then the flags put back.
        // A key 'env:NAME' sets the environment variable NAME instead (the addon's TFJS_MOE_CUDA_* switches).
        for (const variant of abVariants) {
          const before = Object.fromEntries(Object.keys(variant).map(
              n => [n, n.startsWith('env:') ? process.env[n.slice(4)] : tf.env().get(n)]));
          const put = (n: string, v: unknown) => {
            if (!n.startsWith('env:')) tf.env().set(n, v as number | boolean | string);
            else if (v === undefined) delete process.env[n.slice(4)];
            else process.env[n.slice(4)] = String(v);
          };
          for (const [n, v] of Object.entries(variant)) put(n, v);
          const g = runner.benchmark(x, T, {warmup: 5, iters, useGraph: true});
          const st = runner.benchmark(x, T, {warmup: 3, iters, useGraph: false});
          const stages = abStages ? runner.profile(x, T, 10) : undefined;
          for (const [n, v] of Object.entries(before)) put(n, v);
          const ab = {dtype, T, flags: variant, kernelGraphMs: median(g), kernelStreamMs: median(st), ...fl, stages};
          results.push(ab);
          console.log(`kernel-only ${dtype} T=${T} ${JSON.stringify(variant)}: graph ${ab.kernelGraphMs.toFixed(4)} ms, ` +
                      `stream ${ab.kernelStreamMs.toFixed(4)} ms` +
                      (stages ? `; ${Object.entries(stages).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}` : ''));
        }
        continue;
      }
      const xT = tf.tensor2d(x, [T, H]);
      const e2e: Record<string, Record<string, number>> = {};
      // Host copy paths and A/B switches of the same native forward ('env' sets the addon's variables for that
      // mode only): the trace adds GPU events (upload, kernels, download), so it is its own mode.
      const modeEnv: Record<string, Record<string, string>> = {
        staged: {}, pageable: {}, pinned: {}, pinnedIn: {}, trace: {TFJS_MOE_CUDA_TRACE: '1'},
        oldSplit: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '0'}, smallPageable: {TFJS_MOE_CUDA_SMALL_UPLOAD: 'pageable'},
        noHugePages: {TFJS_MOE_CUDA_HUGEPAGES: '0'}, prefaultLate: {TFJS_MOE_CUDA_PREFAULT: 'late'},
        prefault16: {TFJS_MOE_CUDA_PREFAULT_THREADS: '16'}, prefault4: {TFJS_MOE_CUDA_PREFAULT_THREADS: '4'},
        chunk256: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '256'}, chunk4096: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '4096'},
        chunk64: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '64'}, chunk128: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '128'},
        registerIn: {TFJS_MOE_CUDA_REGISTER: 'in'}, registerOut: {TFJS_MOE_CUDA_REGISTER: 'out'},
        registerInOut: {TFJS_MOE_CUDA_REGISTER: 'in,out'}, slice128: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '128'},
        pool: {TFJS_MOE_CUDA_OUTPUT_POOL_MIB: '256'},
        pool64: {TFJS_MOE_CUDA_OUTPUT_POOL_MIB: '256', TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB: '64'},
        ntStores: {TFJS_MOE_CUDA_COPY_STORES: 'stream'}, plainStores: {TFJS_MOE_CUDA_COPY_STORES: 'plain'},
        stagedB: {}, plainStoresB: {TFJS_MOE_CUDA_COPY_STORES: 'plain'},
        slice1024: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '1024'}, slice2048: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '2048'},
        slice2048nt: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '2048', TFJS_MOE_CUDA_COPY_STORES: 'stream'},
        prefaultHuge: {TFJS_MOE_CUDA_PREFAULT_SPLIT: 'huge'},
        prefaultHuge16: {TFJS_MOE_CUDA_PREFAULT_SPLIT: 'huge', TFJS_MOE_CUDA_PREFAULT_THREADS: '16'},
        noMapped: {TFJS_MOE_CUDA_MAPPED_KIB: '0'}, traceNoMapped: {TFJS_MOE_CUDA_TRACE: '1', TFJS_MOE_CUDA_MAPPED_KIB: '0'},
        mapped4M: {TFJS_MOE_CUDA_MAPPED_KIB: '4096'}, spin100: {TFJS_MOE_CUDA_POOL_SPIN_US: '100'},
        spin0: {TFJS_MOE_CUDA_POOL_SPIN_US: '0'}, traceSpin0: {TFJS_MOE_CUDA_TRACE: '1', TFJS_MOE_CUDA_POOL_SPIN_US: '0'},
        // split*: forwardStart, the output tensor made while the GPU runs, forwardFinish (the layer path's default).
        split: {}, splitSpin0: {TFJS_MOE_CUDA_POOL_SPIN_US: '0'}, traceSplit: {TFJS_MOE_CUDA_TRACE: '1'},
        slice512: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'}, slice256: {TFJS_MOE_CUDA_COPY_SLICE_KIB: '256'},
        fine: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '128'}, splitFine: {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '128'},
        // The host defaults of session 7's final (main 8abb7be) that remain switchable: no polling, 512 KiB slices.
        old: {TFJS_MOE_CUDA_POOL_SPIN_US: '0', TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'},
        traceOld: {TFJS_MOE_CUDA_TRACE: '1', TFJS_MOE_CUDA_POOL_SPIN_US: '0', TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'},
      };
      // The host paths against each other, bit for bit: the DMA path (mapped off), the default, the mapped blocks
      // up to 4 MiB, pinned output, pageable (all the same kernels on the same x).
      const exactness: Record<string, boolean> = {};
      {
        const withEnv = (env: Record<string, string>, output: 'staged' | 'pinned' | 'pageable' = 'staged') => {
          for (const [k, v] of Object.entries(env)) process.env[k] = v;
          try {
            runner.forwardWithRouting(x, T, {output});  // a first call captures
            return runner.forwardWithRouting(x, T, {output}).output.slice();
          } finally {
            for (const k of Object.keys(env)) delete process.env[k];
          }
        };
        const dma = withEnv({TFJS_MOE_CUDA_MAPPED_KIB: '0'});
        const same = (y: Float32Array) => y.length === dma.length &&
            new Uint32Array(y.buffer, y.byteOffset, y.length).every((v, i) => v === new Uint32Array(dma.buffer)[i]);
        exactness.default = same(withEnv({}));
        exactness.mapped4M = same(withEnv({TFJS_MOE_CUDA_MAPPED_KIB: '4096'}));
        exactness.pinned = same(withEnv({}, 'pinned'));
        exactness.pageable = same(withEnv({}, 'pageable'));
        exactness.spin0 = same(withEnv({TFJS_MOE_CUDA_POOL_SPIN_US: '0'}));
        console.log(`${dtype} T=${T} outputs equal to the DMA path's bit for bit: ${JSON.stringify(exactness)}`);
      }
      // A warm-up pass first (discarded): the first mode measured after a change of T read JIT and clock warm-up.
      for (let i = 0; i < 2 * e2eIters; i++) tf.tensor2d(runner.forwardWithRouting(x, T).output, [T, H]).dispose();
      // --rounds R: every mode's loop R times, the order of the modes reversed every other round (A/B interleaved
      // in one process against the position bias); the medians are over all rounds.
      const partsOf: Record<string, Record<string, number[]>> = {}, gcOf: Record<string, number[]> = {};
      const order = Array.from({length: rounds}, (_, r) => r % 2 === 0 ? modes : [...modes].reverse()).flat();
      for (const mode of order) {
        const parts: Record<string, number[]> = partsOf[mode] ??= {total: [], dataSync: [], native: [], alloc: [],
          uploadHost: [], launch: [], wait: [], prefault: [], prefaultWait: [], register: [], outside: [], tensor: [],
          dispose: [], gpuUpload: [], gpuKernel: [], gpuDownload: []};
        let loopStart = 0;
        // 'pinned in': x is a previous forward's pinned output, as in a stack of layers through host tensors.
        const input = mode === 'pinnedIn' ?
            tf.tensor2d(runner.forwardWithRouting(x, T, {output: 'pinned'}).output, [T, H]) : xT;
        const output = mode === 'pinned' || mode === 'pageable' ? mode : 'staged';
        const env = modeEnv[mode] ?? {};
        for (const [k, v] of Object.entries(env)) process.env[k] = v;
        const split = mode.startsWith('split') || mode === 'traceSplit';
        for (let i = 0; i < itersAt(T) + 2; i++) {
          const s0 = performance.now();
          const data = input.dataSync() as Float32Array;
          const s1 = performance.now();
          let r: {output: Float32Array}, out: tf.Tensor2D, s2: number, s3: number;
          if (split) {  // the tensor made between the halves: 'tensor' is inside 'native' here
            r = runner.forwardStart(data, T, {useGraph: true, output})!;
            const m0 = performance.now();
            out = tf.tensor2d(r.output, [T, H]);
            const m1 = performance.now();
            runner.forwardFinish();
            s3 = performance.now();
            s2 = s3 - (m1 - m0);
          } else {
            r = runner.forwardWithRouting(data, T, {useGraph: true, output});
            s2 = performance.now();
            out = tf.tensor2d(r.output, [T, H]);
            s3 = performance.now();
          }
          out.dispose();
          const s4 = performance.now();
          const t = runner.lastTimings();
          if (i < 2) continue;  // the first calls allocate staging and pool blocks
          if (i === 2) loopStart = s0;
          parts.total.push(s3 - s0);
          parts.dataSync.push(s1 - s0);
          parts.native.push(s2 - s1);
          parts.alloc.push(t.allocMs);
          parts.uploadHost.push(t.uploadHostMs);
          parts.launch.push(t.launchMs);
          parts.wait.push(t.waitMs);
          parts.prefault.push(t.prefaultMs);
          parts.prefaultWait.push(t.prefaultWaitMs);
          parts.register.push(t.registerMs);
          // JS and N-API around the native forward: the output array's allocation, argument checks, the result.
          parts.outside.push(s2 - s1 - t.uploadHostMs - t.waitMs - t.allocMs);
          parts.tensor.push(s3 - s2);
          parts.dispose.push(s4 - s3);
          parts.gpuUpload.push(t.gpuUploadMs);
          parts.gpuKernel.push(t.gpuKernelMs);
          parts.gpuDownload.push(t.gpuDownloadMs);
        }
        for (const k of Object.keys(env)) delete process.env[k];
        if (input !== xT) input.dispose();
        (gcOf[mode] ??= []).push(await gcMsIn(loopStart, performance.now(), itersAt(T)));
      }
      for (const mode of modes) {
        e2e[mode] = {...Object.fromEntries(Object.entries(partsOf[mode]).map(([k, v]) => [k, median(v)])),
          gc: median(gcOf[mode])};
      }
      // Through CudaFusedMoe.apply (tensor in, tensor out), as the layer's cuda executor runs it, and through the
      // FusedMoE layer itself (layer.apply with backend 'cuda': what a user calls). --layer-modes: the same under A/B
      // switches ('flag:NAME' keys set tfjs flags, others environment variables), interleaved over --rounds; the
      // first mode's numbers are also e2e.layerApply / e2e.fusedMoE.
      const layerModeEnv: Record<string, Record<string, string | boolean>> = {default: {},
        noSplit: {'flag:MOE_CUDA_SPLIT_FORWARD': false}, spin0: {TFJS_MOE_CUDA_POOL_SPIN_US: '0'},
        old: {'flag:MOE_CUDA_SPLIT_FORWARD': false, TFJS_MOE_CUDA_POOL_SPIN_US: '0', TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'}};
      const layerOrder = Array.from({length: rounds}, (_, r) => r % 2 === 0 ? layerModes : [...layerModes].reverse()).flat();
      const layerParts: Record<string, {total: number[], executor: number[], gc: number[]}> = {};
      let warmed = false;
      for (const lmode of layerOrder) {
        const env = layerModeEnv[lmode] ?? {};
        const put = (k: string, v: string | boolean | undefined) => {
          if (k.startsWith('flag:')) tf.env().set(k.slice(5), v as boolean);
          else if (v === undefined) delete process.env[k];
          else process.env[k] = String(v);
        };
        const prior = Object.fromEntries(Object.keys(env).map(
            k => [k, k.startsWith('flag:') ? tf.env().getBool(k.slice(5)) : process.env[k]]));
        for (const [k, v] of Object.entries(env)) put(k, v);
        for (const [name, call] of [['layerApply', () => layerMoe!.apply(xT, weightTensors)],
                                    ['fusedMoE', () => stack[0].apply(xT) as tf.Tensor]] as const) {
          if (name === 'fusedMoE' && stack.length === 0) continue;
          const totals: number[] = [], inExecutor: number[] = [];
          let loopStart = 0;
          // Warm calls first (discarded): the layer's JavaScript (tfjs-layers' apply, the executor) runs in V8's
          // interpreter for its first calls, which is what 12 timed calls alone measured (session 4's 75-180 us).
          for (let i = 0; i < (warmed ? 4 : warmCalls(T)); i++) call().dispose();
          for (let i = 0; i < itersAt(T) + 2; i++) {
            executorMs = 0;
            const s0 = performance.now();
            const out = call();
            totals.push(performance.now() - s0);
            inExecutor.push(executorMs);
            out.dispose();
            if (i === 1) loopStart = performance.now();
          }
          const gc = await gcMsIn(loopStart, performance.now(), itersAt(T));
          const key = `${name}:${lmode}`;
          const acc = layerParts[key] ??= {total: [], executor: [], gc: []};
          acc.total.push(...totals.slice(2));
          acc.executor.push(...inExecutor.slice(2));
          acc.gc.push(gc);
        }
        warmed = true;
        for (const [k, v] of Object.entries(prior)) put(k, v);
      }
      for (const [key, p] of Object.entries(layerParts)) {
        const [name, lmode] = key.split(':');
        // executor: the time inside the cuda executor's forward (the layer's own JS is total - executor).
        const row = {total: median(p.total), executor: median(p.executor), gc: median(p.gc)};
        e2e[lmode === layerModes[0] ? name : `${name}_${lmode}`] = row;
        if (lmode === layerModes[0] && layerModes.length > 1) e2e[`${name}_${lmode}`] = row;
      }
      console.log(`${dtype} T=${T} layer paths: ` + Object.entries(layerParts).map(
          ([k, p]) => `${k} ${median(p.total).toFixed(4)} (executor ${median(p.executor).toFixed(4)})`).join(', '));
      // A stack of `stackSize` FusedMoE layers (each its own weights on the GPU): through host tensors (apply per
      // layer) and device-resident (applyDevice: one upload, the layers on the GPU, one download).
      const hostStack: number[] = [], deviceStack: number[] = [], uploadOnly: number[] = [], downloadOnly: number[] = [];
      // The device stack's host side: until every layer is enqueued, and the part of that inside the executor.
      const deviceEnqueue: number[] = [], deviceExecutor: number[] = [];
      for (let i = 0; i < (stack.length > 0 ? warmCalls(T) : 0); i++) {  // warm calls, as for the layer paths
        let act = stack[0].applyDevice(xT);
        for (const layer of stack.slice(1)) {
          const next = layer.applyDevice(act);
          act.dispose();
          act = next;
        }
        act.toTensor().dispose();
        act.dispose();
        let y = xT;
        for (const layer of stack) {
          const next = layer.apply(y) as tf.Tensor2D;
          if (y !== xT) y.dispose();
          y = next;
        }
        y.dispose();
      }
      for (let i = 0; i < (stack.length > 0 ? e2eIters + 1 : 0); i++) {
        const s0 = performance.now();
        let y = xT;
        for (const layer of stack) {
          const next = layer.apply(y) as tf.Tensor2D;
          if (y !== xT) y.dispose();
          y = next;
        }
        const s1 = performance.now();
        y.dispose();
        const s2 = performance.now();
        executorMs = 0;
        let act = stack[0].applyDevice(xT);
        for (const layer of stack.slice(1)) {
          const next = layer.applyDevice(act);
          act.dispose();
          act = next;
        }
        const inExecutor = executorMs;
        const s3a = performance.now();
        const yd = act.toTensor();
        const s3 = performance.now();
        act.dispose();
        yd.dispose();
        // The upload and the download alone (the download waits for the upload, which is not waited for itself).
        const s4 = performance.now();
        const lone = CudaActivation.fromTensor(xT);
        const s5 = performance.now();
        const back = lone.toTensor();
        const s6 = performance.now();
        lone.dispose();
        back.dispose();
        if (i === 0) continue;
        hostStack.push(s1 - s0);
        deviceStack.push(s3 - s2);
        deviceEnqueue.push(s3a - s2);
        deviceExecutor.push(inExecutor);
        uploadOnly.push(s5 - s4);
        downloadOnly.push(s6 - s5);
      }
      // --stack-modes: the device-resident stack again under A/B switches, interleaved over --rounds.
      const stackModeEnv: Record<string, Record<string, string>> = {default: {},
        noMapped: {TFJS_MOE_CUDA_MAPPED_KIB: '0'}, uploadSync: {TFJS_MOE_CUDA_UPLOAD_SYNC: '1'},
        spin0: {TFJS_MOE_CUDA_POOL_SPIN_US: '0'}, old: {TFJS_MOE_CUDA_POOL_SPIN_US: '0', TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'},
        before: {TFJS_MOE_CUDA_MAPPED_KIB: '0', TFJS_MOE_CUDA_UPLOAD_SYNC: '1', TFJS_MOE_CUDA_POOL_SPIN_US: '0'}};
      const stackAb: Record<string, number[]> = {};
      const stackOrder = Array.from({length: rounds}, (_, r) => r % 2 === 0 ? stackModes : [...stackModes].reverse()).flat();
      for (const mode of stack.length > 0 ? stackOrder : []) {
        const env = stackModeEnv[mode] ?? {};
        for (const [k, v] of Object.entries(env)) process.env[k] = v;
        for (let i = 0; i < e2eIters + 2; i++) {
          const s0 = performance.now();
          let act: ReturnType<FusedMoE["applyDevice"]>;
          try {
            act = stack[0].applyDevice(xT);
          } catch (e) {
            console.log(`stack mode ${mode} T=${T}: ${(e as Error).message}`);
            break;
          }
          for (const layer of stack.slice(1)) {
            const next = layer.applyDevice(act);
            act.dispose();
            act = next;
          }
          const yd = act.toTensor();
          const s1 = performance.now();
          act.dispose();
          yd.dispose();
          if (i >= 2) (stackAb[mode] ??= []).push(s1 - s0);
        }
        for (const k of Object.keys(env)) delete process.env[k];
      }
      xT.dispose();
      const kernel = median(graph);
      const xBytes = T * H * 4;
      const targetMs = kernel + 2 * (xBytes / (link.pinnedH2D * 1e9) + xBytes / (link.pinnedD2H * 1e9)) * 1e3;
      const device = {stackLayers: stack.length, hostStackMs: median(hostStack), deviceStackMs: median(deviceStack),
        perLayerMs: median(deviceStack) / stack.length, uploadMs: median(uploadOnly), downloadMs: median(downloadOnly),
        layersMs: median(deviceStack) - median(uploadOnly) - median(downloadOnly),
        enqueueMs: median(deviceEnqueue), executorMs: median(deviceExecutor),
        targetMs: stack.length * kernel + (targetMs - kernel),
        modes: Object.fromEntries(Object.entries(stackAb).map(([m, v]) => [m, median(v)]))};
      const stages = runner.profile(x, T, 10);
      const f = floorMs(T, dtype);
      const row = {
        dtype, T, kernelGraphMs: kernel, kernelStreamMs: median(stream), endToEndTfjsMs: e2e.staged?.total, exactness,
        e2e, device, targetMs,
        targetMet: {...Object.fromEntries(Object.entries(e2e).map(([m, p]) => [m, p.total <= targetMs])),
          deviceStack: device.deviceStackMs <= device.targetMs},
        ...f, ratioToFloor: kernel / f.floorMs, uploadMs, stages, outputPool: CudaMoeRunner.outputPoolStats(),
      };
      results.push(row);
      console.log(JSON.stringify(row));
    }
    runner.dispose();
    layerMoe?.dispose();
    stack.forEach(l => l.dispose());
    tf.dispose(Object.values(layerWeights));
    tf.dispose(Object.values(weightTensors) as tf.Tensor[]);
  }
  const out = arg('out', '');
  if (out) writeFileSync(out, JSON.stringify({device: status.device, H, I, E, k: K, link, latency, results}, null, 1));
  gcObserver.disconnect();
  if (kernelOnly) return;
  console.log('\n dtype     |     T | kernel ms | staged | pageable | fusedMoE | target | stack host | stack device | stack target | floor');
  for (const r of results as Array<Record<string, unknown>>) {
    const e = r.e2e as Record<string, Record<string, number>>, d = r.device as Record<string, number>;
    const f = (v: number | undefined, w: number) => (v == null ? '-' : v.toFixed(3)).padStart(w);
    console.log(` ${String(r.dtype).padEnd(9)} | ${String(r.T).padStart(5)} | ${f(r.kernelGraphMs as number, 9)} | ` +
        `${f(e.staged?.total, 6)} | ${f(e.pageable?.total, 8)} | ${f(e.fusedMoE?.total, 8)} | ${f(r.targetMs as number, 6)} | ` +
        `${f(d.hostStackMs, 10)} | ${f(d.deviceStackMs, 12)} | ${f(d.targetMs, 12)} | ${f(r.floorMs as number, 5)}`);
  }
  for (const r of results as Array<Record<string, unknown>>) {
    const parts = Object.entries(r.e2e as Record<string, Record<string, number>>).map(([m, p]) =>
      `${m}: ${Object.entries(p).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(' ')}`).join(' | ');
    console.log(` ${r.dtype} T=${r.T} e2e ms: ${parts}; met ${JSON.stringify(r.targetMet)}`);
  }
  for (const r of results as Array<Record<string, unknown>>) {
    const st = Object.entries(r.stages as Record<string, number>).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ');
    console.log(` ${r.dtype} T=${r.T}: ${st}`);
  }
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
