/**
 * ONNX Runtime's com.microsoft.QMoE as the peer of our packed layers, for the benches that time both in one process
 * (webgpu_qmoe_bench.ts, webgpu_decode_bench.ts): a MatMul router feeding QMoE, holding exactly our codes and
 * scales (onnx_moe_model.ts's writer: int8 per column or int4 blocks, symmetric; int8 per column has no QMoE form
 * with one block size for both projections, so int8 g128 stands for it). ORT's time per call: N runs in flight at
 * once (Promise.all), ms per run, median of 3 repetitions (each run copies x in and the output out).
 */
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import type * as Ort from 'onnxruntime-node';

import {writeOrtQMoeModel} from './onnx_moe_model.js';
import type {FormatRow, HostPacked} from './random_packed.js';
import {median} from './stats.js';

export type OrtRunner = (x: Float32Array, T: number) => Promise<{output: Float32Array, ms: number}>;
export interface OrtHooks {
  /** Builds the QMoE session for these weights (null when the format has no QMoE counterpart). */
  prepare(f: FormatRow, gate: Float32Array, up: HostPacked, down: HostPacked): Promise<OrtRunner | null>;
  release(): Promise<void>;
}

/** QMoE sessions on execution provider `ep` for the formats labelled in `formats`, one at a time. */
export function ortQMoeHooks(shape: {H: number, I: number, E: number, K: number}, ep: string,
                             formats: readonly string[]): OrtHooks {
  const {H, I, E, K} = shape;
  let session: Ort.InferenceSession | null = null;
  let dir: string | null = null;
  return {
    async prepare(f, gate, up, down) {
      if (!formats.includes(f.label) || (f.format !== 'int8' && f.format !== 'int4') || f.zeroPoint) return null;
      // Loaded here, so that a run without ORT works where onnxruntime-node is absent.
      const ort = await import('onnxruntime-node');
      dir = mkdtempSync(join(tmpdir(), 'moe-qmoe-'));
      const project = (p: HostPacked) => ({format: f.format as 'int8' | 'int4', groupSize: p.groupSize, shape: p.shape,
                                           values: p.values as Int32Array, scales: p.scales as Float32Array});
      const path = writeOrtQMoeModel(dir, {H, I, E, k: K, gate, upGate: project(up), down: project(down)});
      session = await ort.InferenceSession.create(path, {executionProviders: [ep]});
      const s = session;
      return async (x: Float32Array, T: number) => {
        const feed = {input: new ort.Tensor('float32', x, [T, H])};
        const first = (await s.run(feed)).output.data as Float32Array;
        const n = T >= 4096 ? 5 : T >= 256 ? 10 : 20;
        const times: number[] = [];
        for (let r = 0; r < 3; r++) {
          const t0 = performance.now();
          await Promise.all(Array.from({length: n}, () => s.run(feed)));
          times.push((performance.now() - t0) / n);
        }
        return {output: first, ms: median(times)};
      };
    },
    async release() {
      await session?.release();
      session = null;
      if (dir != null) rmSync(dir, {recursive: true, force: true});
      dir = null;
    },
  };
}
