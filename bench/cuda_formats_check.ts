/**
 * One-shot check on the GPU machine: a FusedMoE per expert weight format through backend 'cuda' (the executor
 * decodes packed weights once, at upload) against the float64 reference evaluated on the dequantized weights, and
 * the same layer on the cpu kernels. Shapes: E 16, H 256, I 128, k 4, T 64, expert biases and a gated shared
 * expert. computeDtype float32 for every format, plus bfloat16 compute for the bfloat16 format (exact weights).
 * Usage: node cuda_formats_check.js [--out results.json]
 */
import * as tf from '@tensorflow/tfjs-core';
// A named import: a bare side-effect import is dropped by bundlers (the package lists its side-effect files).
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {writeFileSync} from 'node:fs';
import * as moe from 'tfjs-moe';
import {FusedMoE, FusedMoEArgs} from 'tfjs-moe';

import {refFusedMoE} from '../spec/reference/moe_reference.js';
import {rand, randn} from './bench_data.js';

const H = 256, T = 64;
const ARGS: FusedMoEArgs = {numExperts: 16, topK: 4, moeIntermediateSize: 128, withBias: true,
  sharedExpertIntermediateSize: 64, sharedExpertGate: true};
const VARIANTS: Array<{label: string, format: moe.ExpertWeightFormat, groupSize?: number, zeroPoint?: boolean,
  computeDtype?: 'float32' | 'bfloat16'}> = [
  {label: 'float32', format: 'float32'}, {label: 'float16', format: 'float16'}, {label: 'bfloat16', format: 'bfloat16'},
  {label: 'bfloat16 (bf16 compute)', format: 'bfloat16', computeDtype: 'bfloat16'},
  {label: 'int8', format: 'int8'}, {label: 'int8 g32', format: 'int8', groupSize: 32},
  {label: 'int4 g32', format: 'int4'}, {label: 'int4 g128 zp', format: 'int4', groupSize: 128, zeroPoint: true},
  {label: 'mxfp4', format: 'mxfp4'},
];

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / Math.max(m, 1e-30);
}

console.log('tfjs-backend-cpu', version_cpu);
await tf.setBackend('cpu');
const status = moe.cudaStatus();
console.log('cudaStatus', JSON.stringify(status));
const rows: Array<Record<string, unknown>> = [];
for (const [i, v] of VARIANTS.entries()) {
  const r = rand(100 + i);
  const layer = new FusedMoE({...ARGS, backend: 'cuda', computeDtype: v.computeDtype ?? 'float32', name: `cuda_${i}`,
    expertWeightFormat: v.format, quantGroupSize: v.groupSize ?? null, quantZeroPoint: v.zeroPoint ?? false}).buildFor(H);
  const cpu = new FusedMoE({...ARGS, backend: 'cpu', name: `cpu_${i}`, expertWeightFormat: v.format,
    quantGroupSize: v.groupSize ?? null, quantZeroPoint: v.zeroPoint ?? false}).buildFor(H);
  const values: Record<string, tf.Tensor> = {};
  for (const spec of moe.weightSpecs(layer.options, H)) {
    const scale = spec.name === 'gate_weight' ? 0.8 : spec.kind === 'bias' ? 0.2 : 0.3;
    values[spec.name] = tf.tensor(randn(r, spec.shape.reduce((a, b) => a * b, 1), scale), spec.shape);
  }
  layer.setNamedWeights(values);
  cpu.setNamedWeights(values);
  tf.dispose(Object.values(values));
  const d: Record<string, Float32Array> = {};
  for (const [name, w] of Object.entries(layer.namedWeights())) {
    const t = w instanceof tf.Tensor ? w : moe.dequantizeExpertWeights(w as moe.QuantizedExpertWeights);
    d[name] = t.dataSync() as Float32Array;
    if (t !== w) t.dispose();
  }
  const o = layer.options;
  const xData = randn(r, T * H, 1);
  const expected = refFusedMoE(xData, T, H, {
    gateWeight: d.gate_weight, upGateProjWeight: d.up_gate_proj_weight, upGateProjBias: d.up_gate_proj_bias,
    downProjWeight: d.down_proj_weight, downProjBias: d.down_proj_bias, sharedUpGateProjWeight: d.shared_up_gate_proj_weight,
    sharedDownProjWeight: d.shared_down_proj_weight, sharedExpertGateWeight: d.shared_expert_gate_weight,
  }, {numExperts: o.numExperts, topK: o.topK, intermediateSize: o.moeIntermediateSize, topkMethod: o.topkMethod,
    nGroup: o.nGroup, topkGroup: o.topkGroup, routedScalingFactor: o.routedScalingFactor, renormalize: o.renormalize,
    useCorrectionBias: false, latentSize: null, withBias: true, probInAdvance: false,
    sharedExpertIntermediateSize: o.sharedExpertIntermediateSize, sharedExpertGate: true});
  const x = tf.tensor2d(xData, [T, H]);
  let row: Record<string, unknown> = {format: v.label, computeDtype: v.computeDtype ?? 'float32'};
  try {
    const before = tf.memory().numTensors;
    const y = layer.apply(x) as tf.Tensor, yc = cpu.apply(x) as tf.Tensor;
    const gpu = y.dataSync(), host = yc.dataSync();
    row = {...row, path: layer.selectedPath(), cudaVsReference: relError(gpu, expected), cpuVsReference: relError(host, expected),
      leaked: tf.memory().numTensors - before - 2};
    tf.dispose([y, yc]);
  } catch (e) {
    row = {...row, error: (e as Error).message};
  }
  x.dispose();
  layer.dispose();
  cpu.dispose();
  rows.push(row);
  console.log(JSON.stringify(row));
}
const out = process.argv.indexOf('--out');
if (out >= 0) writeFileSync(process.argv[out + 1], JSON.stringify({device: 'H200', H, T, ...ARGS, rows}, null, 2));
