/**
 * FusedMoE's load-balancing options and the per-layer state behind them.
 *
 * - auxLossCoef: the Switch/Mixtral auxiliary loss, added to the model's loss through the layer's losses (so
 *   model.fit minimises it with the task loss). As HF transformers' load_balancing_loss_func computes it:
 *     aux = auxLossCoef * E * sum_e (n_e / T) * P_e,
 *   n_e = the (token, slot) pairs routed to expert e in the call, T = tokens, P_e = the mean over tokens of the
 *   router's probability of e: softmax(logits) for greedy routing, sigmoid scores normalised to sum 1 for
 *   noaux_tc (DeepSeek's sequence-wise balance loss normalises them the same way). Perfectly even routing gives
 *   auxLossCoef * k. The gradient reaches gate_weight through P (the counts n_e are not differentiable).
 * - biasUpdateRate: DeepSeek-V3's auxiliary-loss-free balancing. After every training call the non-trainable
 *   gate_correction_bias moves by biasUpdateRate * sign(mean load - load_e): an overloaded expert becomes less
 *   likely to be chosen, an idle one more. Needs useCorrectionBias. updateCorrectionBias() does the same step
 *   on demand from the last recorded loads.
 * - recordExpertLoad: keep the last call's per-expert loads (int32 [E], n_e above), readable through
 *   FusedMoE.expertLoad(). Defaults to true when either balancing method is on.
 *
 * The statistics come from the forward's own routing (its ids and router logits) when the forward returns them
 * (the kernel and composite paths do; the CUDA executor returns its ids, and the logits are computed here only for
 * the auxiliary loss). An executor that does not expose its routing gets the call's input routed again with the
 * same function (routeLogits), for the cost of one x @ gate_weight and one top-k.
 */
import * as tf from '@tensorflow/tfjs-core';

import type {FusedMoEOptions, FusedMoEWeights} from '../executor/layer_schema.js';
import {describeValue} from '../ops/limits.js';
import {stopGradient} from '../ops/stop_gradient.js';
import {layerRouterLogits, routeLogits} from './fused_moe_forward.js';

/** Load-balancing options of a FusedMoE layer (auxiliary loss, auxiliary-loss-free bias update, load recording). */
export interface LoadBalancingOptions {
  /** Coefficient of the Switch/Mixtral auxiliary loss (0: off). */
  auxLossCoef: number;
  /** DeepSeek auxiliary-loss-free bias step per training call (0: off; needs useCorrectionBias). */
  biasUpdateRate: number;
  /** Keep the last call's per-expert loads (readable with FusedMoE.expertLoad()). */
  recordExpertLoad: boolean;
}

export const LOAD_BALANCING_KEYS = ['auxLossCoef', 'biasUpdateRate', 'recordExpertLoad'] as const;

function optionError(option: string, expected: string, got: unknown): Error {
  return new Error(`FusedMoE: option '${option}' must be ${expected}, got ${describeValue(got)}`);
}

function nonNegative(option: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw optionError(option, 'a finite number >= 0', value);
  }
  return value;
}

/** Fills defaults and checks the balancing options against the MoE options, before any tensor exists. */
export function resolveLoadBalancing(args: Partial<LoadBalancingOptions>, moe: FusedMoEOptions): LoadBalancingOptions {
  const auxLossCoef = nonNegative('auxLossCoef', args.auxLossCoef);
  const biasUpdateRate = nonNegative('biasUpdateRate', args.biasUpdateRate);
  if (biasUpdateRate > 0 && !moe.useCorrectionBias) {
    throw optionError('biasUpdateRate', '0 unless useCorrectionBias is true (the rate moves gate_correction_bias)',
        biasUpdateRate);
  }
  let recordExpertLoad = auxLossCoef > 0 || biasUpdateRate > 0;
  if (args.recordExpertLoad !== undefined) {
    if (typeof args.recordExpertLoad !== 'boolean') throw optionError('recordExpertLoad', 'a boolean', args.recordExpertLoad);
    recordExpertLoad = args.recordExpertLoad;
  }
  return {auxLossCoef, biasUpdateRate, recordExpertLoad};
}

/** Writes a new value into the layer's gate_correction_bias variable. */
export type BiasWriter = (value: tf.Tensor1D) => void;

/** One layer's balancing state: the last call's loads (kept) and the last training call's auxiliary loss. */
export class LoadBalancer {
  private load: tf.Tensor1D | null = null;
  private auxLoss: tf.Scalar | null = null;

  constructor(readonly options: LoadBalancingOptions) {}

  /** Whether observe() has anything to do. */
  get active(): boolean {
    const o = this.options;
    return o.auxLossCoef > 0 || o.biasUpdateRate > 0 || o.recordExpertLoad;
  }

  /**
   * Called by FusedMoE.call after its forward, with the call's input x [T,H]. Records the loads; in a training
   * call also computes the auxiliary loss (left in the caller's scope: model.fit's gradient scope, which reads
   * it through the layer's losses) and takes the aux-free bias step.
   */
  observe(x: tf.Tensor, weights: FusedMoEWeights, moe: FusedMoEOptions, training: boolean, writeBias: BiasWriter,
          routing: ForwardRouting | null = null): void {
    if (!this.active) return;
    const withAux = training && this.options.auxLossCoef > 0;
    const {load, aux} = statistics(x, weights, moe, withAux ? this.options.auxLossCoef : 0, routing);
    if (aux != null) {
      // Outside any scope nothing else frees the loss it replaces (inside model.fit its scope already did).
      if (this.auxLoss !== aux) this.auxLoss?.dispose();
      this.auxLoss = aux;
    }
    if (training && this.options.biasUpdateRate > 0) {
      const bias = weights.gate_correction_bias as tf.Tensor1D;
      const next = tf.tidy(() => {
        const load32 = tf.cast(load, 'float32');
        const step = tf.mul(tf.sign(tf.sub(tf.mean(load32), load32)), tf.scalar(this.options.biasUpdateRate));
        return tf.add(bias, step) as tf.Tensor1D;
      });
      writeBias(next);
      next.dispose();
    }
    if (this.options.recordExpertLoad) {
      this.load?.dispose();
      this.load = tf.keep(load);
    } else {
      load.dispose();
    }
  }

  /** The auxiliary loss of the last training call, or 0 (the layer's loss function for model.fit). */
  auxLossTerm(): tf.Scalar {
    const aux = this.auxLoss;
    return aux != null && !aux.isDisposed ? aux : tf.scalar(0);
  }

  /** The last training call's auxiliary loss tensor while its scope lives, else null. */
  lastAuxLoss(): tf.Scalar | null {
    return this.auxLoss != null && !this.auxLoss.isDisposed ? this.auxLoss : null;
  }

  /** Per-expert loads of the last call (owned by the layer: do not dispose), or null before the first call. */
  expertLoad(): tf.Tensor1D | null {
    return this.load;
  }

  /** DeepSeek's step from the last recorded loads; false when there are none yet. */
  updateCorrectionBias(rate: number, bias: tf.Tensor1D, writeBias: BiasWriter): boolean {
    if (this.load == null) return false;
    const load = this.load;
    const next = tf.tidy(() => {
      const load32 = tf.cast(load, 'float32');
      return tf.add(bias, tf.mul(tf.sign(tf.sub(tf.mean(load32), load32)), tf.scalar(rate))) as tf.Tensor1D;
    });
    writeBias(next);
    next.dispose();
    return true;
  }

  dispose(): void {
    this.load?.dispose();
    this.load = null;
    this.auxLoss?.dispose();
    this.auxLoss = null;
  }
}

/** The routing a forward used: ids int32 [T,k] and router logits float32 [T,E] (x @ gate_weight, + gate_bias with routerBias; may be absent). */
export interface ForwardRouting {
  topkIds: tf.Tensor2D;
  gatingLogits?: tf.Tensor2D;
}

/**
 * The loads int32 [E] and, when auxLossCoef > 0, the auxiliary loss of one call: from the forward's routing, or
 * (routing null) by routing x ([T,H] or [B,S,H]) with the forward's routing function.
 */
function statistics(input: tf.Tensor, w: FusedMoEWeights, o: FusedMoEOptions, auxLossCoef: number,
                    routing: ForwardRouting | null): {load: tf.Tensor1D, aux: tf.Scalar | null} {
  const [load, aux] = tf.tidy(() => {
    let logits: tf.Tensor2D | undefined;
    let ids: tf.Tensor2D;
    if (routing != null) {
      // Ids without logits (a native forward): the logits are computed below only if the auxiliary loss needs them.
      ({gatingLogits: logits, topkIds: ids} = routing);
    } else {
      const x = tf.reshape(input, [-1, input.shape[input.rank - 1]]) as tf.Tensor2D;
      logits = layerRouterLogits(x, w, o);
      ids = routeLogits(stopGradient(logits), w, o).topkIds;
    }
    const numTokens = ids.shape[0];
    const numExperts = o.numExperts;
    // Counts by comparison with every expert index (tf.oneHot rejects E = 1): [T*k,E] -> [E].
    const experts = tf.reshape(tf.range(0, numExperts, 1, 'int32'), [1, numExperts]);
    const hits = tf.cast(tf.equal(tf.reshape(stopGradient(ids), [-1, 1]), experts), 'float32');
    const counts = tf.sum(hits, 0);
    const loadOut = tf.cast(counts, 'int32') as tf.Tensor1D;
    if (auxLossCoef === 0 || numTokens === 0) return auxLossCoef === 0 ? [loadOut] : [loadOut, tf.scalar(0)];
    logits ??= layerRouterLogits(tf.reshape(input, [-1, input.shape[input.rank - 1]]) as tf.Tensor2D, w, o);
    let probs: tf.Tensor2D;
    if (o.topkMethod === 'noaux_tc') {
      const scores = tf.sigmoid(logits);
      probs = tf.div(scores, tf.add(tf.sum(scores, 1, true), tf.scalar(1e-20)));
    } else {
      probs = tf.softmax(logits, -1);
    }
    // Identity experts (zeroExperts) cost nothing: only the E real experts are balanced.
    const meanProbs = o.zeroExperts > 0 ? tf.slice(tf.mean(probs, 0), 0, numExperts) : tf.mean(probs, 0);
    const auxOut = tf.mul(tf.scalar(auxLossCoef * numExperts / numTokens), tf.sum(tf.mul(counts, meanProbs)));
    return [loadOut, auxOut];
  });
  return {load: load as tf.Tensor1D, aux: (aux ?? null) as tf.Scalar | null};
}
