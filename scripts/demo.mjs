#!/usr/bin/env node
// The main job (`npm run demo`): one FusedMoE layer of a chosen model shape on the best available backend
// (webgpu on a hardware adapter, then cuda, then cpu), checked against the cpu path, with the median latency of
// repeated calls and the expert-load histogram. `npm run demo -- --help` lists the flags.
import {performance} from 'node:perf_hooks';

import * as tf from '@tensorflow/tfjs';
import * as moe from 'tfjs-moe';
import {initWebGPUForNode} from 'tfjs-moe/node';

import {findModelShape, MODEL_SHAPES, scaledModel} from '../demo/model_shapes.js';
import {parseFlags} from './cli.mjs';

const FLAGS = {
  'model': {kind: 'choice', choices: MODEL_SHAPES.map(m => m.id), default: 'qwen3', help: 'model shape'},
  'scale': {kind: 'int', default: 8, help: 'divide the hidden and intermediate sizes by N (1: the real size; tiny ignores it)'},
  'tokens': {kind: 'int', default: 16, help: 'tokens per call'},
  'iters': {kind: 'int', default: 20, help: 'timed calls (2 more warm up)'},
  'backend': {kind: 'choice', choices: ['auto', 'webgpu', 'cuda', 'cpu', 'composite'], default: 'auto',
    help: 'auto: webgpu on a hardware adapter, then cuda, then cpu; webgpu also takes a software adapter'},
  'seed': {kind: 'int', default: 1, help: 'weights and input seed'},
};

function fail(message) {
  console.error(`demo: ${message}`);
  process.exit(2);
}

const log = (...a) => console.log(...a);

/** WebGPU through dawn.node; resolves to {ok, detail}. Software adapters count only when asked for by name. */
async function initWebGpu(explicit) {
  const status = await initWebGPUForNode({adapter: explicit ? 'any' : 'hardware', setBackend: false});
  if (!status.available) {
    return {ok: false, detail: status.software ? `only a software adapter (${status.adapterName}); ` +
        '--backend webgpu uses it' : status.reason};
  }
  return {ok: true, detail: `${status.adapterName}${status.software ? ', a software adapter: not GPU timings' : ''}`};
}

function cudaAvailability() {
  const executor = moe.getMoeLayerExecutor?.('cuda');
  if (executor == null) {
    const status = typeof moe.cudaStatus === 'function' ? moe.cudaStatus() : null;
    return {ok: false, detail: status?.available ? 'CUDA is available but no FusedMoE cuda executor is registered' :
        `no cuda executor registered${status ? ` (${status.reason})` : ''}`};
  }
  const a = executor.availability();
  return {ok: a.available, detail: a.available ? (moe.cudaStatus?.().device ?? 'CUDA') : a.reason};
}

/** Picks {layerBackend, tfBackend, detail}: the best available, or exactly the one asked for. */
async function chooseBackend(requested) {
  const tried = [];
  if (requested === 'auto' || requested === 'webgpu') {
    const w = await initWebGpu(requested === 'webgpu');
    // 'auto' on webgpu: our webgpu kernels where registered, else the stock-ops path (selectedPath says which).
    if (w.ok) return {layerBackend: 'auto', tfBackend: 'webgpu', detail: w.detail, tried};
    if (requested === 'webgpu') fail(`webgpu requested but unavailable: ${w.detail}`);
    tried.push(`webgpu: ${w.detail}`);
  }
  if (requested === 'auto' || requested === 'cuda') {
    const c = cudaAvailability();
    if (c.ok) return {layerBackend: 'cuda', tfBackend: 'cpu', detail: c.detail, tried};
    if (requested === 'cuda') fail(`cuda requested but unavailable: ${c.detail}`);
    tried.push(`cuda: ${c.detail}`);
  }
  if (requested === 'composite') return {layerBackend: 'composite', tfBackend: 'cpu', detail: 'stock tfjs ops', tried};
  return {layerBackend: 'cpu', tfBackend: 'cpu', detail: 'tfjs-moe cpu kernels', tried};
}

/** Random weights with unit-scale outputs (std 1/sqrt(fan-in)); biases small; all from one seed. */
function randomizeWeights(layer, seed) {
  const values = {};
  let s = seed;
  for (const [name, t] of Object.entries(layer.namedWeights())) {
    const fanIn = name.endsWith('bias') ? 0 : t.shape[t.rank - 2];
    const std = name === 'gate_correction_bias' ? 0.02 : fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0.05;
    values[name] = tf.randomNormal(t.shape, 0, std, 'float32', s++);
  }
  layer.setNamedWeights(values);
  tf.dispose(Object.values(values));
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Text histogram of tokens routed to each expert (buckets of experts when E is large). */
function histogram(counts, k, tokens) {
  const E = counts.length;
  const rows = Math.min(E, 32), per = Math.ceil(E / rows);
  const buckets = [];
  for (let b = 0; b * per < E; b++) {
    const lo = b * per, hi = Math.min(E, lo + per);
    buckets.push({label: per === 1 ? `e${lo}` : `e${lo}-${hi - 1}`, n: counts.slice(lo, hi).reduce((a, c) => a + c, 0)});
  }
  const max = Math.max(1, ...buckets.map(b => b.n));
  const width = Math.max(...buckets.map(b => b.label.length));
  const lines = buckets.map(b => `  ${b.label.padStart(width)} |${'#'.repeat(Math.round((b.n / max) * 40)).padEnd(40)}| ${b.n}`);
  const used = counts.filter(c => c > 0).length;
  const mean = (tokens * k) / E;
  const busiest = counts.indexOf(Math.max(...counts));
  lines.push(`  ${tokens} tokens x k=${k} = ${tokens * k} assignments; ${used}/${E} experts used; ` +
      `busiest expert e${busiest}: ${counts[busiest]} tokens (mean ${mean.toFixed(2)}, ` +
      `${(counts[busiest] / mean).toFixed(2)}x)`);
  return lines.join('\n');
}

async function main() {
  const opts = parseFlags(process.argv.slice(2), FLAGS, {command: 'demo',
    intro: 'One FusedMoE layer of a model\'s shape with random weights on the best available backend, checked ' +
        'against the cpu path.'});
  const m = findModelShape(opts.model);
  const scale = opts.model === 'tiny' ? 1 : opts.scale;
  const {hidden: H, args: shapeArgs} = scaledModel(m, scale);
  const I = shapeArgs.moeIntermediateSize, S = shapeArgs.sharedExpertIntermediateSize;
  const T = opts.tokens;
  await tf.setBackend('cpu');
  await tf.ready();

  log(`tfjs-moe demo: ${m.label}${scale > 1 ? ` scaled 1/${scale}` : ''} MoE layer ` +
      `(H=${H}, I=${I}, E=${m.numExperts}, k=${m.topK}${S ? `, shared ${S}` : ''}, ${m.routing.topkMethod}), ` +
      `${T} tokens, ${opts.iters} timed calls`);
  const chosen = await chooseBackend(opts.backend);
  for (const t of chosen.tried) log(`  skipped ${t}`);
  log(`backend: ${chosen.layerBackend === 'auto' ? chosen.tfBackend : chosen.layerBackend} (${chosen.detail})`);

  const layerArgs = shapeArgs;
  const weightBytes = moe.weightSpecs({...layerArgs, topkMethod: 'greedy', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, useCorrectionBias: false, latentSize: null, withBias: false, probInAdvance: false,
    sharedExpertGate: false, backend: 'auto', ...m.routing}, H).reduce((n, s) => n + 4 * s.shape.reduce((a, b) => a * b, 1), 0);
  log(`building the layer: ${(weightBytes / 2 ** 20).toFixed(1)} MiB of float32 weights ...`);
  const layer = new moe.FusedMoE({...layerArgs, backend: chosen.layerBackend, name: 'moe'}).buildFor(H);
  randomizeWeights(layer, opts.seed);
  const x = tf.randomNormal([T, H], 0, 1, 'float32', opts.seed + 1000);

  // The check: the same weights on the cpu path (our cpu kernels; the composite path when cpu is under test).
  const checkBackend = chosen.tfBackend === 'cpu' && chosen.layerBackend === 'cpu' ? 'composite' : 'cpu';
  const checker = new moe.FusedMoE({...layerArgs, backend: checkBackend, name: 'moe_check'}).buildFor(H);
  checker.setWeights(layer.getWeights());
  log(`computing the check output on the ${checkBackend === 'cpu' ? 'cpu kernels' : 'cpu composite path'} ...`);
  let t0 = performance.now();
  const yCheckT = checker.apply(x);
  const yCheck = await yCheckT.data();
  yCheckT.dispose();
  log(`  done in ${(performance.now() - t0).toFixed(1)} ms`);
  const ids = moe.routeTokens(x, layer.namedWeights(), layer.options);
  const idData = await ids.topkIds.data();
  tf.dispose([ids.topkIds, ids.topkWeights]);
  const counts = new Array(m.numExperts).fill(0);
  for (const e of idData) counts[e]++;

  await tf.setBackend(chosen.tfBackend);
  const path = layer.selectedPath();
  log(`running on ${path}: 2 warm-up + ${opts.iters} timed calls`);
  const times = [];
  let y = null;
  const total = opts.iters + 2;
  const started = performance.now();
  let lastReport = started;
  for (let i = 0; i < total; i++) {
    t0 = performance.now();
    const out = layer.apply(x);
    const data = await out.data();  // async read: the only kind webgpu allows in Node
    out.dispose();
    const dt = performance.now() - t0;
    if (i >= 2) times.push(dt);
    y = data;
    const now = performance.now();
    if (now - lastReport > 1000 || i === total - 1) {
      log(`  call ${i + 1}/${total}: ${dt.toFixed(2)} ms (elapsed ${((now - started) / 1000).toFixed(1)} s)`);
      lastReport = now;
    }
  }
  await tf.setBackend('cpu');

  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < y.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(y[i] - yCheck[i]));
    maxRef = Math.max(maxRef, Math.abs(yCheck[i]));
  }
  const rel = maxDiff / Math.max(maxRef, 1e-30);
  const med = median(times);
  log('');
  log(`backend used:     ${path} (${chosen.detail})`);
  log(`latency:          median ${med.toFixed(3)} ms over ${times.length} calls (min ${Math.min(...times).toFixed(3)} ms), ` +
      `${((T / med) * 1000).toFixed(0)} tokens/s`);
  log(`max difference:   ${maxDiff.toExponential(3)} absolute, ${rel.toExponential(3)} relative to max |y| ` +
      `(vs the ${checkBackend === 'cpu' ? 'cpu kernels' : 'cpu composite path'})`);
  log('expert load (tokens routed to each expert):');
  log(histogram(counts, m.topK, T));
  tf.dispose(x);
  layer.dispose();
  checker.dispose();
  const bound = 1e-4;
  if (!(rel < bound)) {
    log(`CHECK FAILED: relative difference ${rel.toExponential(3)} >= ${bound}`);
    process.exit(1);
  }
  log(`check passed (relative difference < ${bound})`);
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
