/**
 * What the families' semantics cost in the native CUDA forward: kernel milliseconds (CUDA events around a CUDA-graph
 * replay, median of --iters) of Qwen3-30B-A3B's layer shape (demo/model_shapes.js) with each family's options,
 * against the same shape's plain softmax routing in the same run (k = 2 for sparsemixer, against plain k = 2).
 * Weights are uniform, so the routing is close to uniform over the experts for any method.
 * Usage: node cuda_semantics_bench.js [--out file.json] [--dtype bfloat16] [--tokens 1,16,256] [--iters 30]
 *   [--only name,name] (configs whose name starts with one of these) [--profile] (per-stage medians at the first T)
 */
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {writeFileSync} from 'node:fs';
import {CudaComputeDtype, cudaStatus} from 'tfjs-moe';
import {CudaFusedMoeConfig, CudaMoeRunner, CudaMoeWeightArrays} from 'tfjs-moe/internal';

import {findModelShape} from '../demo/model_shapes.js';
import {median} from './stats.js';
import {arg, uniform} from './bench_data.js';

const {hidden: H, intermediate: I, numExperts: E, topK: K} = findModelShape('qwen3')!;

type Config = Omit<CudaFusedMoeConfig, 'hidden' | 'numExperts' | 'intermediateSize' | 'computeDtype'>;
const Z = E / 2;
const CONFIGS: Array<[string, Config, string]> = [
  ['plain softmax', {topK: K}, ''],
  ['gpt-oss: router bias, clamped SwiGLU, expert biases',
    {topK: K, routerBias: true, activation: 'clamped_swiglu', withBias: true}, 'plain softmax'],
  ['Llama-4: weight on the input, sigmoid one group', {topK: K, routingWeightOn: 'input', topkMethod: 'noaux_tc',
    renormalize: false}, 'plain softmax'],
  ['DeepSeek-V2: group_limited_greedy 8/3, rsf 16', {topK: K, topkMethod: 'group_limited_greedy', nGroup: 8,
    topkGroup: 3, routedScalingFactor: 16, renormalize: false}, 'plain softmax'],
  ['LFM2: noaux_tc, bias, renormalizeEpsilon 1e-6', {topK: K, topkMethod: 'noaux_tc', useCorrectionBias: true,
    renormalizeEpsilon: 1e-6}, 'plain softmax'],
  [`LongCat: ${Z} zero experts, bias, rsf`, {topK: K, zeroExperts: Z, useCorrectionBias: true, renormalize: false,
    routedScalingFactor: 2}, 'plain softmax'],
  ['plain softmax, k = 2', {topK: 2}, ''],
  ['PhiMoE: sparsemixer', {topK: 2, topkMethod: 'sparsemixer', sparsemixerEpsilon: 0.01, renormalize: false},
    'plain softmax, k = 2'],
];

function main() {
  const status = cudaStatus();
  console.log(JSON.stringify(status));
  if (!status.available) throw new Error(`CUDA unavailable: ${status.reason}`);
  console.log(`tfjs-backend-cpu ${version_cpu}`);
  const dtype = arg('dtype', 'bfloat16') as CudaComputeDtype;
  const tokens = arg('tokens', '1,16,256').split(',').map(Number);
  const iters = Number(arg('iters', '30'));
  const shared: CudaMoeWeightArrays = {
    upGateProjWeight: uniform(E * H * 2 * I, Math.sqrt(3 / H), 2),
    downProjWeight: uniform(E * I * H, Math.sqrt(3 / I), 3),
    upGateProjBias: uniform(E * 2 * I, 0.05, 4), downProjBias: uniform(E * H, 0.05, 5),
  };
  const results: Array<Record<string, unknown>> = [];
  const byName = new Map<string, number[]>();
  const only = arg('only', '').split(',').filter(Boolean);
  const profile = process.argv.includes('--profile');
  for (const [name, c, baseline] of CONFIGS) {
    if (only.length > 0 && !only.some(o => name.startsWith(o))) continue;
    const routed = E + (c.zeroExperts ?? 0);
    const weights: CudaMoeWeightArrays = {
      upGateProjWeight: shared.upGateProjWeight, downProjWeight: shared.downProjWeight,
      gateWeight: uniform(H * routed, Math.sqrt(3 / H), 1),
      ...(c.withBias ? {upGateProjBias: shared.upGateProjBias, downProjBias: shared.downProjBias} : {}),
      ...(c.routerBias ? {gateBias: uniform(routed, 0.5, 6)} : {}),
      ...(c.useCorrectionBias ? {gateCorrectionBias: uniform(routed, 0.1, 7)} : {}),
    };
    const runner = new CudaMoeRunner({...c, hidden: H, numExperts: E, intermediateSize: I, computeDtype: dtype}, weights);
    const ms: number[] = [];
    for (const T of tokens) {
      const x = uniform(T * H, 1, 100 + T);
      ms.push(median(runner.benchmark(x, T, {warmup: 5, iters, useGraph: true})));
    }
    const stages = profile ? runner.profile(uniform(tokens[0] * H, 1, 100 + tokens[0]), tokens[0], iters) : null;
    if (stages) console.log(`  stages at T=${tokens[0]} (ms): ${JSON.stringify(stages)}`);
    runner.dispose();
    byName.set(name, ms);
    const base = baseline ? byName.get(baseline) ?? null : null;
    results.push({name, config: c, dtype, tokens, medianMs: ms, ratioToBaseline: base?.map((b, i) => ms[i] / b),
      stages});
    console.log(`${name.padEnd(52)} ${ms.map((m, i) => `T=${tokens[i]} ${m.toFixed(4)} ms${
        base ? ` (x${(m / base[i]).toFixed(3)})` : ''}`).join('  ')}`);
  }
  const out = arg('out', '');
  if (out) writeFileSync(out, JSON.stringify({device: status.device, shape: {H, I, E, K}, iters, results}, null, 1));
}

main();
