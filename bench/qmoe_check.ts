/**
 * Checks that ORT's com.microsoft.QMoE (onnxruntime-node, CPU EP) and tfjs-moe compute the same layer from the
 * same int8 / int4 block-32 codes (onnx_moe_model.ts's writer): a small layer at a few T, max |ours - ORT| /
 * max |ORT| printed per case; exits 1 above 1e-4. Run before trusting a QMoE timing (the layout is ORT's, read
 * from its docs and source, not a standard).
 *   npx esbuild bench/qmoe_check.ts --bundle --platform=node --format=esm --external:onnxruntime-node
 *     '--external:@tensorflow/*' --outfile=build/qmoe_check.mjs && node build/qmoe_check.mjs
 */
import * as tf from '@tensorflow/tfjs';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import * as ort from 'onnxruntime-node';

import {quantizeExpertWeightsFromArray} from '../src/index.js';
import type {FusedMoEOptions, QuantizedExpertWeights} from '../src/index.js';
import {fusedMoeForward} from '../src/internal.js';
import {PackedProjection, writeOrtQMoeModel} from './onnx_moe_model.js';
import {moeBenchOptions, relDiff, uniform} from './cpu_bench_common.js';

async function packed(q: QuantizedExpertWeights, format: 'int8' | 'int4'): Promise<PackedProjection> {
  return {format, groupSize: q.groupSize, shape: q.shape as [number, number, number],
    values: await q.values.data() as Int32Array, scales: await q.scales!.data() as Float32Array};
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const H = 128, I = 64, E = 8, k = 2;
  let worst = 0;
  for (const format of ['int8', 'int4'] as const) {
    const gate = uniform(H * E, 1 / Math.sqrt(H), 1);
    const upGate = quantizeExpertWeightsFromArray(uniform(E * H * 2 * I, 1 / Math.sqrt(H), 2), [E, H, 2 * I], format,
                                                  {groupSize: 32});
    const down = quantizeExpertWeightsFromArray(uniform(E * I * H, 1 / Math.sqrt(I), 3), [E, I, H], format,
                                                {groupSize: 32});
    const dir = mkdtempSync(join(tmpdir(), 'tfjs-moe-qmoe-'));
    try {
      const path = writeOrtQMoeModel(dir, {H, I, E, k, gate, upGate: await packed(upGate, format),
        down: await packed(down, format)});
      const session = await ort.InferenceSession.create(path, {executionProviders: ['cpu'], intraOpNumThreads: 1});
      const options: FusedMoEOptions = {...moeBenchOptions(E, k, I), expertWeightFormat: format, quantGroupSize: 32};
      const weights = {gate_weight: tf.tensor2d(gate, [H, E]), up_gate_proj_weight: upGate, down_proj_weight: down};
      for (const T of [1, 3, 17]) {
        const x = uniform(T * H, 1, 10 + T);
        const ortOut = (await session.run({input: new ort.Tensor('float32', x, [T, H])})).output.data as Float32Array;
        const y = tf.tidy(() => fusedMoeForward(tf.tensor2d(x, [T, H]), weights, options));
        const d = relDiff(y.dataSync() as Float32Array, ortOut);
        y.dispose();
        worst = Math.max(worst, d);
        console.log(`${format} g32 T=${T}: max |ours - ORT QMoE| / max |ORT| = ${d.toExponential(2)}`);
      }
      await session.release();
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  }
  if (!(worst < 1e-4)) {
    console.error(`ORT QMoE and tfjs-moe disagree (${worst}): the QMoE layout assumptions are wrong`);
    process.exit(1);
  }
}

await main();
