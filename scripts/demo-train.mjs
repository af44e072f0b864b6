#!/usr/bin/env node
// `npm run demo:train`: trains a small model with a FusedMoE layer on a clustered synthetic task (each token's
// target is a function chosen by its cluster) with model.fit, printing the loss and the expert loads per epoch,
// then trains a dense baseline with the same parameter count on the same data and compares.
// `npm run demo:train -- --help` lists the flags.

const HELP = `usage: npm run demo:train -- [flags]
  --epochs N        training epochs (default 30)
  --balance MODE    none | aux | auxfree (default auxfree): the Switch/Mixtral auxiliary loss (--aux-coef, default 1:
                    the task's MSE starts near 6-20, so 1 weighs balance as LM training weighs 0.01 against ~2),
                    or DeepSeek's auxiliary-loss-free bias update (--bias-rate, default 0.01; adds a correction bias)
  --backend B       FusedMoE backend: auto | cpu | composite (default auto)
  --tf-backend B    tfjs backend: cpu | webgpu (default cpu; webgpu through dawn.node, e.g. on SwiftShader with
                    VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json)
  --seed S          data and weights seed (default 1)
  --clusters C      clusters of the task (default 8); --experts E (default C), --topk K (default 1),
  --width I         expert width, also the teacher's (default 8); --hidden H (default 16); --tokens N (default 1024)
  --no-baseline     skip the dense baseline`;

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log(HELP);
  process.exit(0);
}
function flag(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const epochs = Number(flag('epochs', 30));
const balance = flag('balance', 'auxfree');
const backend = flag('backend', 'auto');
const seed = Number(flag('seed', 1));
if (!['none', 'aux', 'auxfree'].includes(balance)) throw new Error(`--balance must be none | aux | auxfree, got ${balance}`);
const tfBackend = flag('tf-backend', 'cpu');
if (tfBackend === 'webgpu') {
  // tfjs-backend-webgpu registers only where navigator.gpu exists: give Node dawn.node's before importing it.
  const {create, globals} = await import('webgpu');
  Object.assign(globalThis, globals);
  globalThis.navigator = {gpu: create([])};
}
const tf = await import('@tensorflow/tfjs');
if (tfBackend === 'webgpu') await import('@tensorflow/tfjs-backend-webgpu');
const moe = await import('tfjs-moe');

// The task: C clusters in R^H; token x = center_c + noise, target y = f_c(x), f_c a random gated-SwiGLU MLP of
// cluster c (width I): the function an expert computes, a different one per cluster.
const H = Number(flag('hidden', 16)), C = Number(flag('clusters', 8)), N = Number(flag('tokens', 1024));
const E = Number(flag('experts', C)), K = Number(flag('topk', 1)), I = Number(flag('width', 8));

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

function makeTask() {
  const centers = Array.from({length: C}, () => Array.from({length: H}, () => 2 * gauss()));
  const teacher = Array.from({length: C}, () => ({
    gate: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
    up: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
    down: Array.from({length: I * H}, () => gauss() / Math.sqrt(I)),
  }));
  const xs = new Float32Array(N * H), ys = new Float32Array(N * H), cluster = new Int32Array(N);
  for (let t = 0; t < N; t++) {
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
  return {x: tf.tensor2d(xs, [N, H]), y: tf.tensor2d(ys, [N, H]), cluster};
}

function moeModel() {
  const layer = new moe.FusedMoE({
    numExperts: E, topK: K, moeIntermediateSize: I, renormalize: K > 1, backend,
    auxLossCoef: balance === 'aux' ? Number(flag('aux-coef', 1)) : 0,
    useCorrectionBias: balance === 'auxfree', biasUpdateRate: balance === 'auxfree' ? Number(flag('bias-rate', 0.01)) : 0,
    recordExpertLoad: true,
    kernelInitializer: tf.initializers.glorotNormal({seed}),
  });
  const input = tf.input({shape: [H]});
  const model = tf.model({inputs: input, outputs: layer.apply(input)});
  return {model, layer};
}

function denseModel(params) {
  // relu MLP H -> W -> H: W (2H + 1) + H parameters.
  const width = Math.round((params - H) / (2 * H + 1));
  const model = tf.sequential({layers: [
    tf.layers.dense({inputShape: [H], units: width, activation: 'relu', kernelInitializer: tf.initializers.glorotNormal({seed})}),
    tf.layers.dense({units: H, kernelInitializer: tf.initializers.glorotNormal({seed: seed + 1})}),
  ]});
  return {model, width};
}

const countParams = model => model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);

async function train(model, data, onEpoch) {
  model.compile({optimizer: tf.train.adam(0.01), loss: 'meanSquaredError'});
  const curve = [];
  await model.fit(data.x, data.y, {
    epochs, batchSize: 64, shuffle: true, verbose: 0,
    callbacks: {onEpochEnd: async (epoch, logs) => {
      curve.push(logs.loss);
      await onEpoch?.(epoch, logs);
    }},
  });
  return curve;
}

if (!(await tf.setBackend(tfBackend))) throw new Error(`tfjs backend '${tfBackend}' failed to initialise`);
await tf.ready();
const data = makeTask();
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
  console.log(`epoch ${String(epoch + 1).padStart(3)}  loss ${logs.loss.toFixed(4)}  expert load (last batch) ${share}${extra}`);
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

if (!args.includes('--no-baseline')) {
  const {model: dense, width} = denseModel(countParams(model));
  console.log(`dense baseline: relu MLP ${H}-${width}-${H}, ${countParams(dense)} trainable parameters`);
  const denseCurve = await train(dense, data, (epoch, logs) => {
    if ((epoch + 1) % 5 === 0 || epoch === 0) console.log(`epoch ${String(epoch + 1).padStart(3)}  loss ${logs.loss.toFixed(4)}`);
  });
  const moeFinal = moeCurve[moeCurve.length - 1], denseFinal = denseCurve[denseCurve.length - 1];
  console.log(`final loss: FusedMoE ${moeFinal.toFixed(4)} vs dense ${denseFinal.toFixed(4)} ` +
      `(ratio ${(moeFinal / denseFinal).toFixed(3)})`);
}
