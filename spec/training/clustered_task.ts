/**
 * A clustered synthetic regression task: C clusters in R^H (centers ~ N(0, 4)), token x = center_c + 0.5 noise,
 * target y = f_c(x) with f_c a random gated-SwiGLU MLP of width I per cluster (what one expert computes). A dense
 * network has to fit C different functions with shared units; an MoE can give each cluster its own expert.
 */
import * as tf from '@tensorflow/tfjs-core';

import {rng} from '../helpers/util.js';

export interface ClusteredTask {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  /** Cluster of each token (token t is in cluster t % C). */
  cluster: Int32Array;
  /** Variance of the targets (the loss of predicting their mean). */
  targetVariance: number;
}

export function clusteredTask(seed: number, numTokens: number, hidden: number, clusters: number, width: number):
    ClusteredTask {
  const rand = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const silu = (z: number) => z / (1 + Math.exp(-z));
  const H = hidden, I = width;
  const centers = Array.from({length: clusters}, () => Array.from({length: H}, () => 2 * gauss()));
  const teachers = Array.from({length: clusters}, () => ({
    gate: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
    up: Array.from({length: H * I}, () => gauss() / Math.sqrt(H)),
    down: Array.from({length: I * H}, () => gauss() / Math.sqrt(I)),
  }));
  const xs = new Float32Array(numTokens * H), ys = new Float32Array(numTokens * H);
  const cluster = new Int32Array(numTokens);
  for (let t = 0; t < numTokens; t++) {
    const c = t % clusters, f = teachers[c];
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
  let mean = 0, sq = 0;
  for (const v of ys) mean += v / ys.length;
  for (const v of ys) sq += (v - mean) ** 2 / ys.length;
  return {x: tf.tensor2d(xs, [numTokens, H]), y: tf.tensor2d(ys, [numTokens, H]), cluster, targetVariance: sq};
}
