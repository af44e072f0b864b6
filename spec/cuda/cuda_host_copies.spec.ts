/**
 * The host copy paths of one layer across changing T (CudaFusedMoe.apply, CUDA graphs on): small forwards copy x
 * and y inside the graph through mapped pinned blocks, large ones through threaded pinned staging and
 * the sliced download. Growing the workspace re-captures the graphs; a small T after a large one must still use
 * buffers the graphs know. The copies' A/B switches (chunk size, small uploads from pageable memory, huge pages,
 * the GPU trace) give the same outputs, and the trace's timings are there. Every output against the float64
 * reference (float32: 1e-4). Pending without CUDA.
 */
import * as tf from '@tensorflow/tfjs-core';
import {setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';
import {cudaStatus} from 'tfjs-moe';
import {CudaActivation, CudaFusedMoe, CudaMoeRunner, CudaMoeWeightTensors} from 'tfjs-moe/internal';

import {randn, recordError, relError, rng} from '../helpers/util.js';
import {refFusedMoE, RefMoeConfig, RefMoeWeights} from '../reference/moe_reference.js';

import {randomMoeWeights} from './moe_weights.js';

const status = cudaStatus();

/**
 * The first index where two arrays' bits differ, -1 when none (or the lengths when they differ): a large array's
 * toEqual costs seconds in jasmine.
 */
function firstDifference(a: Float32Array | Int32Array | Uint8Array | undefined,
                         b: Float32Array | Int32Array | Uint8Array | undefined): number {
  if (a == null || b == null || a.length !== b.length) return Math.max(a?.length ?? 0, b?.length ?? 0);
  const bits = (v: Float32Array | Int32Array | Uint8Array) =>
      v.BYTES_PER_ELEMENT === 4 ? new Uint32Array(v.buffer, v.byteOffset, v.length) : v;
  const x = bits(a), y = bits(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

describe('CUDA host copies across T', () => {
  beforeEach(() => {
    if (!status.available) pending(`CUDA unavailable (${status.code}): ${status.reason}`);
  });

  it('T = 1, 3, 700 (x over 1 MiB: sliced path), 2, 1, 700 on one layer match the reference', async () => {
    const H = 512, rand = rng(5150);
    const cfg: RefMoeConfig = {numExperts: 8, topK: 2, intermediateSize: 32, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
      withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = randomMoeWeights(rand, H, cfg);
    const weights = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as CudaMoeWeightTensors;
    const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: 'float32'});
    const before = tf.memory().numTensors;
    try {
      for (const T of [1, 3, 700, 2, 1, 700]) {
        const x = randn(rand, T * H);
        const xT = tf.tensor2d(x, [T, H]);
        for (let call = 0; call < 2; call++) {  // capture, then replay
          const out = layer.apply(xT, weights);
          const err = relError(await out.data(), refFusedMoE(x, T, H, w as unknown as RefMoeWeights, cfg));
          recordError('cuda host copies float32', err);
          expect(err).withContext(`T ${T} call ${call}`).toBeLessThan(1e-4);
          out.dispose();
        }
        xT.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      layer.dispose();
      tf.dispose(Object.values(weights) as tf.Tensor[]);
    }
  });

  it('every copy switch (chunks of 4 KiB / 300 KiB / one per thread, pageable or staged small uploads, no huge pages, ' +
     'trace, late or one-thread prefault, x and y page-locked, a thread per 128 KiB, the output pool, pooled from ' +
     '2 MiB only, non-temporal or plain staging stores at every size, the prefault by 2 MiB blocks, small forwards ' +
     'through DMAs or mapped blocks up to 4 MiB, helpers that sleep at once, a copy thread per 512 KiB) ' +
     'matches the reference at T = 1, 100, 700, 2100', async () => {
    const H = 512, rand = rng(5160);
    const cfg: RefMoeConfig = {numExperts: 8, topK: 2, intermediateSize: 32, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
      withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = randomMoeWeights(rand, H, cfg);
    const runner = new CudaMoeRunner({hidden: H, ...cfg, computeDtype: 'float32'}, w);
    const switches: Array<Record<string, string>> = [{}, {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '4'},
      {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '300'}, {TFJS_MOE_CUDA_COPY_CHUNK_KIB: '0'},
      {TFJS_MOE_CUDA_SMALL_UPLOAD: 'pageable'}, {TFJS_MOE_CUDA_SMALL_UPLOAD: 'staged'}, {TFJS_MOE_CUDA_HUGEPAGES: '0'},
      {TFJS_MOE_CUDA_TRACE: '1'},
      {TFJS_MOE_CUDA_PREFAULT: 'late'}, {TFJS_MOE_CUDA_PREFAULT_THREADS: '1'}, {TFJS_MOE_CUDA_REGISTER: 'in,out'},
      {TFJS_MOE_CUDA_COPY_SLICE_KIB: '128'}, {TFJS_MOE_CUDA_OUTPUT_POOL_MIB: '256'},
      {TFJS_MOE_CUDA_OUTPUT_POOL_MIB: '256', TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB: '2048'},
      {TFJS_MOE_CUDA_COPY_STORES: 'stream'}, {TFJS_MOE_CUDA_COPY_STORES: 'plain'},
      {TFJS_MOE_CUDA_PREFAULT_SPLIT: 'huge'}, {TFJS_MOE_CUDA_MAPPED_KIB: '0'}, {TFJS_MOE_CUDA_MAPPED_KIB: '4096'},
      {TFJS_MOE_CUDA_POOL_SPIN_US: '0'}, {TFJS_MOE_CUDA_COPY_SLICE_KIB: '512'}];
    try {
      // 2 KiB (pageable path), 200 KiB (staged, one thread), 1.4 MiB and 4.3 MiB (threaded chunks).
      for (const T of [1, 100, 700, process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 900 : 2100]) {
        const x = randn(rand, T * H);
        const ref = refFusedMoE(x, T, H, w as unknown as RefMoeWeights, cfg);
        for (const env of switches) {
          for (const [k, v] of Object.entries(env)) process.env[k] = v;
          try {
            for (let call = 0; call < 2; call++) {
              const y = runner.forwardWithRouting(x, T).output;
              const err = relError(y, ref);
              recordError('cuda host copy switches float32', err);
              expect(err).withContext(`T ${T} ${JSON.stringify(env)} call ${call}`).toBeLessThan(1e-4);
              const t = runner.lastTimings();
              if (env.TFJS_MOE_CUDA_TRACE === '1') {
                expect(t.gpuKernelMs).withContext('traced kernel ms').toBeGreaterThan(0);
                expect(t.gpuUploadMs).toBeGreaterThanOrEqual(0);
                // Mapped (small) forwards copy y inside the graph: nothing of the download is left after it.
                expect(t.gpuDownloadMs).toBeGreaterThanOrEqual(0);
              } else {
                expect(t.gpuKernelMs).toBe(-1);
              }
              expect(t.waitMs).toBeGreaterThanOrEqual(t.launchMs);
            }
          } finally {
            for (const k of Object.keys(env)) delete process.env[k];
          }
        }
      }
    } finally {
      runner.dispose();
    }
  });

  it('small forwards through the mapped host blocks (x and y copied by the graph) equal the DMA path bit for bit, ' +
     'with routing ids, as T changes and the mapped limit grows (re-captured graphs), float32 and bfloat16', () => {
    const H = 256, rand = rng(5180);
    const cfg: RefMoeConfig = {numExperts: 8, topK: 2, intermediateSize: 32, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
      withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = randomMoeWeights(rand, H, cfg);
    const prior = process.env.TFJS_MOE_CUDA_MAPPED_KIB;
    for (const computeDtype of ['float32', 'bfloat16'] as const) {
      const runner = new CudaMoeRunner({hidden: H, ...cfg, computeDtype}, w);
      try {
        // 1 KiB .. 256 KiB (the default limit), then 600 KiB with the limit raised to 1 MiB (the blocks grow).
        for (const [T, limit] of [[1, undefined], [17, undefined], [256, undefined], [3, undefined], [600, '1024'],
                                  [1, '1024'], [600, undefined]] as const) {
          const x = randn(rand, T * H);
          const run = (kib: string | undefined) => {
            if (kib === undefined) delete process.env.TFJS_MOE_CUDA_MAPPED_KIB;
            else process.env.TFJS_MOE_CUDA_MAPPED_KIB = kib;
            return [0, 1].map(() => runner.forwardWithRouting(x, T, {wantIds: true}));  // capture, then replay
          };
          const viaDma = run('0'), mapped = run(limit);
          for (let call = 0; call < 2; call++) {
            const at = `${computeDtype} T ${T} limit ${limit ?? 'default'} call ${call}`;
            expect(mapped[call].output).withContext(at).toEqual(viaDma[call].output);
            expect(mapped[call].topkIds).withContext(at).toEqual(viaDma[call].topkIds!);
          }
          if (computeDtype === 'float32') {
            const err = relError(mapped[1].output, refFusedMoE(x, T, H, w as unknown as RefMoeWeights, cfg));
            recordError('cuda mapped host copies float32', err);
            expect(err).withContext(`T ${T}`).toBeLessThan(1e-4);
          }
        }
      } finally {
        if (prior === undefined) delete process.env.TFJS_MOE_CUDA_MAPPED_KIB;
        else process.env.TFJS_MOE_CUDA_MAPPED_KIB = prior;
        runner.dispose();
      }
    }
  });

  it('split forwards (start, host work, finish) equal the synchronous forward bit for bit on every copy path and ' +
     'T, with ids; an open start is finished by the next call, a synchronous forward, the layer path or dispose; ' +
     'the layer path with MOE_CUDA_SPLIT_FORWARD on and off leaves no tensor behind', () => {
    const H = 256, rand = rng(5190);
    const cfg: RefMoeConfig = {numExperts: 8, topK: 2, intermediateSize: 32, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
      withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = randomMoeWeights(rand, H, cfg);
    for (const computeDtype of ['float32', 'bfloat16'] as const) {
      const runner = new CudaMoeRunner({hidden: H, ...cfg, computeDtype}, w);
      try {
        // 1 KiB (mapped), 300 KiB (one-thread staging), 2.3 / 1.1 MiB (threaded staging, sliced download).
        for (const T of [1, 300, process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 1100 : 2300, 2]) {
          const x = randn(rand, T * H);
          for (const output of ['staged', 'pinned', 'pageable'] as const) {
            const at = `${computeDtype} T ${T} ${output}`;
            const sync = runner.forwardWithRouting(x, T, {wantIds: true, output});
            const again = runner.forwardWithRouting(x, T, {wantIds: true, output});  // graphs replayed
            const started = runner.forwardStart(x, T, {wantIds: true, output});
            expect(started).withContext(at).not.toBeNull();
            runner.forwardFinish();
            runner.forwardFinish();  // a second finish does nothing
            expect(firstDifference(started!.output, sync.output)).withContext(at).toBe(-1);
            expect(firstDifference(started!.topkIds, sync.topkIds!)).withContext(at).toBe(-1);
            expect(firstDifference(again.output, sync.output)).withContext(at).toBe(-1);
            // Left open, then another start: the first is complete before the second begins.
            const open = runner.forwardStart(x, T, {output})!;
            const next = runner.forwardStart(x, T, {wantIds: true, output})!;
            expect(firstDifference(open.output, sync.output)).withContext(`${at} open`).toBe(-1);
            runner.forwardFinish();
            expect(firstDifference(next.output, sync.output)).withContext(`${at} next`).toBe(-1);
            // Left open, then a synchronous forward.
            const open2 = runner.forwardStart(x, T, {output})!;
            const y = runner.forwardWithRouting(x, T, {output}).output;
            expect(firstDifference(open2.output, sync.output)).withContext(`${at} open2`).toBe(-1);
            expect(firstDifference(y, sync.output)).withContext(`${at} sync after open`).toBe(-1);
          }
        }
        const x = randn(rand, 5 * H);
        const ref = runner.forwardWithRouting(x, 5).output;
        const open = runner.forwardStart(x, 5)!;
        runner.dispose();  // finishes it
        expect(open.output).toEqual(ref);
      } finally {
        runner.dispose();
      }
    }
    // The layer path (CudaFusedMoe.applyWithRouting) with the split on (default) and off.
    const weights = Object.fromEntries(Object.entries(w).map(([n, v]) => [n, tf.tensor1d(v)])) as CudaMoeWeightTensors;
    const layer = new CudaFusedMoe({hidden: H, ...cfg, computeDtype: 'bfloat16'});
    const prior = tf.env().getBool('MOE_CUDA_SPLIT_FORWARD');
    const before = tf.memory().numTensors;
    try {
      for (const T of [1, process.env.TFJS_MOE_SPEC_SCALE === 'small' ? 1100 : 2300, 3]) {
        const xT = tf.tensor2d(randn(rand, T * H), [T, H]);
        const outs = [true, false, true].map(split => {
          tf.env().set('MOE_CUDA_SPLIT_FORWARD', split);
          const r = layer.applyWithRouting(xT, weights, {wantIds: true});
          const got = [r.output.dataSync().slice(), r.topkIds!.dataSync().slice()];
          tf.dispose([r.output, r.topkIds!]);
          return got;
        });
        expect(firstDifference(outs[0][0], outs[1][0])).withContext(`layer T ${T}`).toBe(-1);
        expect(firstDifference(outs[0][1], outs[1][1])).withContext(`layer T ${T} ids`).toBe(-1);
        expect(firstDifference(outs[2][0], outs[1][0])).withContext(`layer T ${T} again`).toBe(-1);
        // Under tfjs's DEBUG flag (tensor() checks the values) the forward is not split.
        tf.env().set('MOE_CUDA_SPLIT_FORWARD', true);
        tf.env().set('DEBUG', true);
        try {
          const y = layer.apply(xT, weights);
          expect(firstDifference(y.dataSync(), outs[1][0] as Float32Array)).withContext(`layer T ${T} DEBUG`).toBe(-1);
          y.dispose();
        } finally {
          tf.env().set('DEBUG', false);
        }
        xT.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      tf.env().set('MOE_CUDA_SPLIT_FORWARD', prior);
      layer.dispose();
      tf.dispose(Object.values(weights) as tf.Tensor[]);
    }
  });

  it('pooled outputs (opt-in, 1 MiB or more): held ones keep their values while later forwards run, collected ' +
     'ones are reused, and they are not transferable (a clone copies them)', async () => {
    const H = 512, T = 700, rand = rng(5170);
    const cfg: RefMoeConfig = {numExperts: 8, topK: 2, intermediateSize: 32, topkMethod: 'greedy', nGroup: 1,
      topkGroup: 1, routedScalingFactor: 1, renormalize: true, useCorrectionBias: false, latentSize: null,
      withBias: false, probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = randomMoeWeights(rand, H, cfg);
    const runner = new CudaMoeRunner({hidden: H, ...cfg, computeDtype: 'float32'}, w);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const prior = process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
    process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB = '256';
    try {
      const xs = [randn(rand, T * H), randn(rand, T * H)];
      const refs = xs.map(x => refFusedMoE(x, T, H, w as unknown as RefMoeWeights, cfg));
      const held = runner.forwardWithRouting(xs[0], T);
      // Where ArrayBuffer.prototype.transfer exists (Node >= 21) nothing is pooled: a transfer would move the block.
      const poolable = typeof (ArrayBuffer.prototype as {transfer?: unknown}).transfer !== 'function';
      expect((held as {pooled?: boolean}).pooled).withContext('a 1.4 MiB output is pooled').toBe(poolable);
      expect(relError(held.output, refs[0])).toBeLessThan(1e-4);
      if (!poolable) return;
      const heldCopy = held.output.slice();
      const before = CudaMoeRunner.outputPoolStats();
      for (let call = 0; call < 6; call++) {
        const y = runner.forwardWithRouting(xs[1], T).output;
        const err = relError(y, refs[1]);
        recordError('cuda pooled outputs float32', err);
        expect(err).withContext(`call ${call}`).toBeLessThan(1e-4);
        gc();  // the output above is unreachable now: its block is free for the next call
      }
      const after = CudaMoeRunner.outputPoolStats();
      expect(after.reused - before.reused).withContext('calls that reused a collected block').toBeGreaterThanOrEqual(5);
      expect(after.allocated - before.allocated).withContext('blocks allocated meanwhile').toBeLessThanOrEqual(1);
      expect(held.output).toEqual(heldCopy);
      expect(relError(held.output, refs[0])).toBeLessThan(1e-4);
      const clone = structuredClone(held.output, {transfer: [held.output.buffer]});
      expect(held.output.length).withContext('still attached after a transfer attempt').toBe(T * H);
      expect(clone).toEqual(heldCopy);
      // An activation's download comes from the same pool.
      const act = CudaActivation.fromHost(xs[0], T, H);
      try {
        expect(act.read()).toEqual(new Float32Array(xs[0]));
      } finally {
        act.dispose();
      }
      delete process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
      expect((runner.forwardWithRouting(xs[0], T) as {pooled?: boolean}).pooled).withContext('off by default').toBe(false);
    } finally {
      if (prior === undefined) delete process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
      else process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB = prior;
      runner.dispose();
    }
  });
});
