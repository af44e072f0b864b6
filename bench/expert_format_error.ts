/**
 * Quantization error per expert weight format at Qwen3-30B-A3B's expert shapes (H 2048, I 768; E 16 experts with
 * top-8 routing, fewer than the model's 128 to keep the host quantizer short: each expert quantizes on its own, so
 * the error does not depend on E): the relative L2 error ||y_q - y|| / ||y|| of the FusedMoE layer's output with the
 * format's weights against the same layer with the float32 weights, cpu backend, T tokens of random normal input,
 * weights random normal (sum of three uniforms). Bounds are issue 12's.
 * Usage: node build/bench/expert_format_error.js [--experts 16] [--tokens 32]
 */
import * as tf from '@tensorflow/tfjs-core';
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import * as moe from 'tfjs-moe';
import {FusedMoE, FusedMoEArgs} from 'tfjs-moe';
import {rand, randn} from './bench_data.js';

const H = 2048, I = 768;
const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.includes(name) ? args[args.indexOf(name) + 1] : fallback;
const E = Number(arg('--experts', '16')), T = Number(arg('--tokens', '32'));
const ARGS: FusedMoEArgs = {numExperts: E, topK: Math.min(8, E), moeIntermediateSize: I, renormalize: true};

const VARIANTS: Array<{label: string, format: moe.ExpertWeightFormat, groupSize?: number, zeroPoint?: boolean,
  bound: number | null}> = [
  {label: 'float16', format: 'float16', bound: 1e-3}, {label: 'bfloat16', format: 'bfloat16', bound: 5e-3},
  {label: 'int8 (per column)', format: 'int8', bound: 2e-2}, {label: 'int8 g32', format: 'int8', groupSize: 32, bound: 2e-2},
  {label: 'int4 g32', format: 'int4', bound: 0.12}, {label: 'int4 g64 zero point', format: 'int4', groupSize: 64, zeroPoint: true, bound: 0.12},
  {label: 'int4 g128', format: 'int4', groupSize: 128, bound: null},
  {label: 'int4 g128 zero point (GPTQ)', format: 'int4', groupSize: 128, zeroPoint: true, bound: null},
  {label: 'mxfp4', format: 'mxfp4', bound: 0.2},
];

function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; m += b[i] ** 2; }
  return Math.sqrt(d / m);
}

void version_cpu;
await tf.setBackend('cpu');
const r = rand(12);
const probe = new FusedMoE({...ARGS, name: 'probe'});
const values: Record<string, tf.Tensor> = {};
for (const spec of moe.weightSpecs(probe.options, H)) {
  const scale = spec.name === 'gate_weight' ? 0.05 : 0.02;
  values[spec.name] = tf.tensor(randn(r, spec.shape.reduce((a, b) => a * b, 1), scale), spec.shape);
}
const x = tf.tensor2d(randn(r, T * H, 1), [T, H]);
const run = (format: moe.ExpertWeightFormat, groupSize: number | null, zeroPoint: boolean, name: string) => {
  const layer = new FusedMoE({...ARGS, name, expertWeightFormat: format, quantGroupSize: groupSize, quantZeroPoint: zeroPoint})
      .buildFor(H);
  const started = performance.now();
  layer.setNamedWeights(values);
  const quantizeSeconds = (performance.now() - started) / 1000;
  const y = layer.apply(x) as tf.Tensor;
  const out = y.dataSync() as Float32Array;
  y.dispose();
  layer.dispose();
  return {out, quantizeSeconds};
};
const reference = run('float32', null, false, 'float32').out;
console.log(`FusedMoE H ${H}, I ${I}, E ${E}, top-${ARGS.topK}, T ${T}, cpu backend; relative L2 vs the float32 weights`);
console.log('| format | relative L2 | bound (issue 12) | quantize s |\n|---|---|---|---|');
for (const v of VARIANTS) {
  const {out, quantizeSeconds} = run(v.format, v.groupSize ?? null, v.zeroPoint ?? false, v.label.replace(/\W/g, '_'));
  const err = relL2(out, reference);
  const verdict = v.bound == null ? '-' : `${v.bound} (${err <= v.bound ? 'met' : 'MISSED'})`;
  console.log(`| ${v.label} | ${err.toExponential(2)} | ${verdict} | ${quantizeSeconds.toFixed(1)} |`);
}
x.dispose();
tf.dispose(Object.values(values));
