/**
 * FusedMoE's constructor arguments and initializers. The options themselves (table, defaults, validation) and the
 * weight table live below the layer, in executor/layer_schema.ts, and are re-exported here.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import {FusedMoEOptions, optionError} from '../executor/layer_schema.js';
import type {LoadBalancingOptions} from './load_balancing.js';

export {MOE_COMPUTE_DTYPES, MOE_LAYER_BACKENDS, OPTION_DEFAULTS, OPTION_KEYS, OPTION_TABLE, resolveOptions,
  TOPK_METHODS, weightSpecs} from '../executor/layer_schema.js';
export type {FusedMoEOptionName, FusedMoEOptions, FusedMoEWeightName, FusedMoEWeights, MoeComputeDtype, MoeLayerBackend,
  OptionSpec, TopkMethod, WeightSpec} from '../executor/layer_schema.js';

/** A tf.layers weight initializer. */
export type Initializer = ReturnType<typeof tfl.initializers.ones>;
/** An Initializer, the camelCase name of a tfjs initializer ('randomNormal'), or its serialized form. */
export type InitializerSpec = Initializer | string | {className: string, config?: tf.serialization.ConfigDict};

/**
 * Constructor arguments: the MoE options (most optional), the load-balancing options (load_balancing.ts), plus
 * initializers and the usual LayerArgs.
 */
export interface FusedMoEArgs extends Partial<FusedMoEOptions>, Partial<LoadBalancingOptions> {
  numExperts: number;
  topK: number;
  moeIntermediateSize: number;
  /** Initializer of every weight matrix (gate, experts, latent and shared projections). */
  kernelInitializer?: InitializerSpec;
  /** Initializer of every bias (expert biases and the gate correction bias). */
  biasInitializer?: InitializerSpec;
  // The usual tf.layers LayerArgs:
  inputShape?: tfl.Shape;
  batchInputShape?: tfl.Shape;
  batchSize?: number;
  dtype?: tf.DataType;
  name?: string;
  trainable?: boolean;
  weights?: tf.Tensor[];
}

const INITIALIZER_FACTORIES: Record<string, (args?: never) => Initializer> =
    tfl.initializers as unknown as Record<string, (args?: never) => Initializer>;

/** Resolves an InitializerSpec to an Initializer (tfjs's own classes, looked up by name). */
export function resolveInitializer(option: string, spec: InitializerSpec | undefined, fallback: () => Initializer):
    Initializer {
  if (spec == null) return fallback();
  if (typeof spec === 'object' && typeof (spec as Initializer).apply === 'function' &&
      typeof (spec as Initializer).getClassName === 'function') {
    return spec as Initializer;
  }
  if (typeof spec === 'string') {
    const factory = INITIALIZER_FACTORIES[spec];
    if (typeof factory !== 'function') {
      throw optionError(option, 'an Initializer or the name of one of tf.initializers (e.g. \'randomNormal\')', spec);
    }
    return factory({} as never);
  }
  if (typeof spec === 'object' && typeof (spec as {className?: unknown}).className === 'string') {
    const {className, config} = spec as {className: string, config?: tf.serialization.ConfigDict};
    const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
    if (entry == null) throw optionError(option, 'a registered initializer class', className);
    const [cls, fromConfig] = entry;
    return fromConfig(cls, config ?? {}) as Initializer;
  }
  throw optionError(option, 'an Initializer, an initializer name, or {className, config}', spec);
}

export function serializeInitializer(init: Initializer): tf.serialization.ConfigDict {
  return {className: init.getClassName(), config: init.getConfig()};
}
