#!/usr/bin/env node
// `npm run demo:train`: trains a small model with a FusedMoE layer on a clustered synthetic task (each token's
// target is a function chosen by its cluster) with model.fit, printing the loss and the expert loads per epoch,
// then two dense SwiGLU MLPs on the same data: one with the MoE's compute per token (width k*I), one with its
// parameter count (width E*I), and compares the mean squared error of all three on held-out tokens.
// `npm run demo:train -- --help` lists the flags.

import {parseFlags} from './cli.mjs';

const FLAGS = {
  'epochs': {kind: 'int', default: 60, help: 'training epochs (the routing settles in about 30; the experts need more)'},
  'balance': {kind: 'choice', choices: ['none', 'aux', 'auxfree'], default: 'auxfree',
    help: 'load balancing: the Switch/Mixtral auxiliary loss (--aux-coef) or DeepSeek\'s auxiliary-loss-free ' +
        'bias update (--bias-rate; adds a correction bias)'},
  'aux-coef': {kind: 'number', default: 1, help: 'auxiliary loss weight with --balance aux'},
  'bias-rate': {kind: 'number', default: 0.01, help: 'bias update rate with --balance auxfree'},
  'backend': {kind: 'choice', choices: ['auto', 'cpu', 'composite'], default: 'auto', help: 'FusedMoE backend'},
  'tf-backend': {kind: 'choice', choices: ['cpu', 'webgpu'], default: 'cpu',
    help: 'tfjs backend (webgpu: dawn.node, on SwiftShader without a GPU)'},
  'seed': {kind: 'int', default: 1, min: 0, help: 'data and weights seed'},
  'clusters': {kind: 'int', default: 8, help: 'clusters of the task'},
  'experts': {kind: 'int', default: null, help: 'experts (default: one per cluster)'},
  'topk': {kind: 'int', default: 1, help: 'experts per token'},
  'width': {kind: 'int', default: 8, help: 'expert width, also the teacher\'s'},
  'hidden': {kind: 'int', default: 16, help: 'hidden size H'},
  'tokens': {kind: 'int', default: 1024, help: 'training tokens (a quarter as many more are held out)'},
  'no-baseline': {kind: 'switch', help: 'skip the dense baselines'},
};
const opts = parseFlags(process.argv.slice(2), FLAGS, {command: 'demo:train',
  intro: 'Trains a FusedMoE on a clustered task with model.fit, then dense MLPs of the same compute and of the ' +
      'same parameter count, and compares their test MSE.'});
if (opts.topk > (opts.experts ?? opts.clusters)) {
  console.error(`demo:train: --topk (${opts.topk}) must be <= the number of experts (${opts.experts ?? opts.clusters})`);
  process.exit(2);
}
const {epochs, balance, backend, seed} = opts;
const tfBackend = opts['tf-backend'];
const tf = await import('@tensorflow/tfjs');
const moe = await import('tfjs-moe');
if (tfBackend === 'webgpu') {
  const {initWebGPUForNode} = await import('tfjs-moe/node');
  const status = await initWebGPUForNode();
  if (!status.available) {
    console.error(`demo:train: --tf-backend webgpu is unavailable: ${status.reason}`);
    process.exit(1);
  }
}

// The task: C clusters in R^H; token x = center_c + noise, target y = f_c(x), f_c a random gated-SwiGLU MLP of
// cluster c (width I): the function an expert computes, a different one per cluster.
const H = opts.hidden, C = opts.clusters, N = opts.tokens, NTEST = Math.max(C, Math.round(N / 4));
const E = opts.experts ?? C, K = opts.topk, I = opts.width;

/** mulberry32, so runs reproduce. */
function rng(s) {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(seed);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const silu = z => z / (1 + Math.exp(-z));

function makeTask(count, teacher, centers) {
  const xs = new Float32Array(count * H), ys = new Float32Array(count * H), cluster = new Int32Array(count);
  for (let t = 0; t < count; t++) {
    const c = t % C, f = teacher[c];
    cluster[t] = c;
    for (let h = 0; h < H; h++) xs[t * H + h] = centers[c][h] + 0.5 * gauss();
    const act = new Float64Array(I);
    for (let i = 0; i < I; i++) {
      let g = 0, u = 0;
      for (let h = 0; h < H; h++) {
        g += xs[t * H + h] * f.gate[h * I + i];
        u += xs[t * H + h] * f.up[h * I + i];
      }
      act[i] = silu(g) * u;
    }
    for (let o = 0; o < H; o++) {
      let acc = 0;
      for (let i = 0; i < I; i++) acc += act[i] * f.down[i * H + o];
      ys[t * H + o] = acc;
    }
  }
  return {x: tf.tensor2d(xs, [count, H]), y: tf.tensor2d(ys, [count, H]), cluster};
}
const centers = Array.from({length: C}, () => Array.from({length: H}, () => 2 * gauss()));
const teacher = Array.from({length: C}, () => ({
  gate: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
  up: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
  down: Array.from({length: I * H}, () => gauss() / Math.sqrt(I)),
}));

/** A FusedMoE model; with E = 1 and k = 1 it is a dense SwiGLU MLP of width I (the same layer, no routing). */
function moeModel({experts = E, topk = K, width = I, balanced = true} = {}) {
  const layer = new moe.FusedMoE({
    numExperts: experts, topK: topk, moeIntermediateSize: width, renormalize: topk > 1, backend,
    auxLossCoef: balanced && balance === 'aux' ? opts['aux-coef'] : 0,
    useCorrectionBias: balanced && balance === 'auxfree',
    biasUpdateRate: balanced && balance === 'auxfree' ? opts['bias-rate'] : 0,
    recordExpertLoad: experts > 1,
    kernelInitializer: tf.initializers.glorotNormal({seed}),
  });
  const input = tf.input({shape: [H]});
  const model = tf.model({inputs: input, outputs: layer.apply(input)});
  return {model, layer};
}

const countParams = model => model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);

async function train(model, data, onEpoch) {
  // The 'mse' metric is the task's error alone; `loss` adds the auxiliary balancing loss when there is one.
  model.compile({optimizer: tf.train.adam(0.01), loss: 'meanSquaredError', metrics: ['mse']});
  await model.fit(data.x, data.y, {
    epochs, batchSize: 64, shuffle: true, verbose: 0,
    callbacks: {onEpochEnd: async (epoch, logs) => onEpoch?.(epoch, logs)},
  });
}

/** Mean squared error of `model` on held-out tokens (no auxiliary loss, no training-time noise). */
async function testMse(model, data) {
  const err = tf.tidy(() => tf.losses.meanSquaredError(data.y, model.predict(data.x)));
  const v = (await err.data())[0];
  err.dispose();
  return v;
}

if (!(await tf.setBackend(tfBackend))) throw new Error(`tfjs backend '${tfBackend}' failed to initialise`);
await tf.ready();
const data = makeTask(N, teacher, centers), test = makeTask(NTEST, teacher, centers);
const {model, layer} = moeModel();
console.log(`FusedMoE: E=${E} k=${K} I=${I} H=${H}, ${countParams(model)} trainable parameters, path ${layer.selectedPath()}, ` +
    `balancing: ${balance}`);
console.log(`task: ${N} tokens in ${C} clusters, target = the cluster's SwiGLU MLP of x (target variance ` +
    `${(await tf.moments(data.y).variance.data())[0].toFixed(3)})`);
const tensorsBefore = tf.memory().numTensors;
const moeCurve = await train(model, data, async (epoch, logs) => {
  const load = layer.expertLoad();
  const loads = load ? Array.from(await load.data()) : [];
  const total = loads.reduce((a, b) => a + b, 0) || 1;
  const share = loads.map(v => (100 * v / total).toFixed(0).padStart(3) + '%').join(' ');
  let extra = '';
  if (balance === 'auxfree') {
    const bias = await layer.namedWeights().gate_correction_bias.data();
    extra = `  bias [${Array.from(bias, v => v.toFixed(2)).join(' ')}]`;
  }
  const aux = balance === 'aux' ? `  (mse ${logs.mse.toFixed(4)} + aux)` : '';
  console.log(`epoch ${String(epoch + 1).padStart(3)}  loss ${logs.loss.toFixed(4)}${aux}  expert load (last batch) ` +
      `${share}${extra}`);
});
console.log(`tensors alive before fit ${tensorsBefore}, after ${tf.memory().numTensors} (Adam's two moments per ` +
    `trainable weight and step powers, and the recorded loads)`);

// Which experts each cluster uses, over the whole data set.
const routed = tf.tidy(() => moe.routeTokens(data.x, layer.namedWeights(), layer.options).topkIds);
const ids = await routed.data();
routed.dispose();
for (let c = 0; c < C; c++) {
  const hist = new Array(E).fill(0);
  for (let t = 0; t < N; t++) if (data.cluster[t] === c) for (let j = 0; j < K; j++) hist[ids[t * K + j]]++;
  console.log(`cluster ${c}: slots per expert [${hist.join(' ')}]`);
}

const moeTest = await testMse(model, test);
console.log(`FusedMoE test MSE on ${NTEST} held-out tokens: ${moeTest.toFixed(4)}`);

if (!opts['no-baseline']) {
  // Like with like: the same SwiGLU layer without routing, and the same loss (MSE on held-out tokens).
  const results = [{name: `FusedMoE E=${E} k=${K} I=${I}`, params: countParams(model), active: K * I, mse: moeTest}];
  for (const [what, width] of [['same compute per token', K * I], ['same parameter count', E * I]]) {
    const {model: dense} = moeModel({experts: 1, topk: 1, width, balanced: false});
    console.log(`dense SwiGLU MLP ${H}-${width}-${H} (${what}), ${countParams(dense)} trainable parameters`);
    await train(dense, data, (epoch, logs) => {
      if ((epoch + 1) % 10 === 0 || epoch === 0) console.log(`epoch ${String(epoch + 1).padStart(3)}  mse ${logs.mse.toFixed(4)}`);
    });
    results.push({name: `dense width ${width} (${what})`, params: countParams(dense), active: width,
      mse: await testMse(dense, test)});
    dense.dispose();
  }
  console.log('\ntest MSE (held-out tokens; lower is better):');
  for (const r of results) {
    console.log(`  ${r.name.padEnd(42)} ${r.mse.toFixed(4)}   ${String(r.params).padStart(6)} parameters, ` +
        `${r.active} hidden units per token`);
  }
  const [m, small, big] = results;
  const versusBig = m.mse <= big.mse ? `${(big.mse / m.mse).toFixed(1)}x lower than the same-size dense MLP's` :
      `${(m.mse / big.mse).toFixed(1)}x the same-size dense MLP's`;
  console.log(`\nReading the numbers: the MoE computes ${K * I} hidden units per token, like the narrow dense MLP, and ` +
      `holds ${E * I} in total, like the wide one. Each cluster's target is its own SwiGLU function, so a router ` +
      `that sends each cluster to its own expert can fit all of them at the narrow MLP's cost. Here the MoE's ` +
      `error is ${(small.mse / m.mse).toFixed(1)}x lower than the same-compute dense MLP's and ${versusBig} ` +
      `(which spends ${E / K}x the compute per token).`);
}
