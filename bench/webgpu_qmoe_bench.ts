/**
 * bench/webgpu_formats_bench.ts with ONNX Runtime's com.microsoft.QMoE side by side, in the same process: the
 * same codes and scales (onnx_moe_model.ts's QMoE writer: int8 per column or int4 blocks, symmetric) behind a
 * MatMul router (int8 per column has no QMoE form with one block size for both projections: int8 g128
 * stands for it), on onnxruntime-node's WebGPU EP (BENCH_ORT_EP=cpu for a check on this machine's CPU EP). ORT's
 * time per call: N runs in flight at once (Promise.all), ms per run, median of repetitions; its output is compared
 * with the same float64 reference as ours. BENCH_ORT=0: ours only.
 */
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import type * as Ort from 'onnxruntime-node';

import {writeOrtQMoeModel} from './onnx_moe_model.js';
import {median} from './stats.js';
import {FormatRow, HostPacked, OrtHooks, runFormatsBench} from './webgpu_formats_bench.js';

const EP = process.env.BENCH_ORT_EP ?? 'webgpu';
const ORT_FORMATS = (process.env.BENCH_ORT_FORMATS ?? 'int4 g32,int8 g128,int4 g128').split(',');
const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);

let session: Ort.InferenceSession | null = null;
let dir: string | null = null;

const hooks: OrtHooks = {
  async prepare(f: FormatRow, gate: Float32Array, up: HostPacked, down: HostPacked) {
    if (!ORT_FORMATS.includes(f.label) || (f.format !== 'int8' && f.format !== 'int4') || f.zeroPoint) return null;
    // Loaded here, so that BENCH_ORT=0 runs where onnxruntime-node is absent.
    const ort = await import('onnxruntime-node');
    dir = mkdtempSync(join(tmpdir(), 'lowbit-qmoe-'));
    const project = (p: HostPacked) => ({format: f.format as 'int8' | 'int4', groupSize: p.groupSize, shape: p.shape,
                                         values: p.values as Int32Array, scales: p.scales as Float32Array});
    const path = writeOrtQMoeModel(dir, {H, I, E, k: K, gate, upGate: project(up), down: project(down)});
    session = await ort.InferenceSession.create(path, {executionProviders: [EP]});
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

runFormatsBench(process.env.BENCH_ORT === '0' ? null : hooks).then(() => process.exit(0), e => {
  console.error(e);
  process.exit(1);
});
