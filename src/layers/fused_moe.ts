/**
 * FusedMoE: a Mixture-of-Experts feed-forward block as a tf.layers Layer (docs/semantics.md section 7).
 * Weights are created in build() under fixed names (see weightSpecs), so models save and load through tfjs's
 * own handlers; call() picks an implementation per call (backend_selection.ts) and leaves no tensor behind.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import {describeValue} from '../ops/limits.js';
import {MoeForwardResult, MoeForwardSelection, releaseMoeLayerState, selectMoeForward} from './backend_selection.js';
import {FusedMoEArgs, FusedMoEOptions, FusedMoEWeightName, FusedMoEWeights, Initializer, OPTION_KEYS, resolveInitializer,
  resolveOptions, serializeInitializer, weightSpecs} from './fused_moe_config.js';
import {checkArgKeys, checkForwardOutput, checkInput, checkNamedWeights, checkWeightSizes} from './fused_moe_checks.js';
import {LOAD_BALANCING_KEYS, LoadBalancer, resolveLoadBalancing} from './load_balancing.js';
import {checkWeightsReadable, moveVariablesToActiveBackend} from './weight_residency.js';

/** A Mixture-of-Experts feed-forward block as a tf.layers Layer (className 'FusedMoE'): routing, the routed SwiGLU experts,
 * combine, optional latent projections and shared experts, on the best path of the active backend (section 7 of
 * docs/semantics.md). Serializable, trainable, imported from Hugging Face by loadHuggingFaceMoe. */
export class FusedMoE extends tfl.layers.Layer {
  static className = 'FusedMoE';

  readonly options: FusedMoEOptions;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly weightVariables = new Map<FusedMoEWeightName, tfl.LayerVariable>();
  private hiddenSize: number | null = null;
  /** Load-balancing state and options (load_balancing.ts). */
  private readonly balancer: LoadBalancer;

  constructor(args: FusedMoEArgs) {
    const {kernelInitializer, biasInitializer, inputShape, batchInputShape, batchSize, dtype, name, trainable, weights} =
        args ?? {} as FusedMoEArgs;
    if (args != null && typeof args === 'object') checkArgKeys(args);
    const options = resolveOptions(args);  // throws before the base class registers anything
    const kernelInit = resolveInitializer('kernelInitializer', kernelInitializer,
        () => tfl.initializers.randomNormal({mean: 0, stddev: 0.02}));
    const biasInit = resolveInitializer('biasInitializer', biasInitializer, () => tfl.initializers.zeros());
    const balancing = resolveLoadBalancing(args, options);
    super({inputShape, batchInputShape, batchSize, dtype, name, trainable, weights});
    this.options = options;
    this.balancer = new LoadBalancer(balancing);
    // model.fit adds the layers' losses to the task loss.
    if (balancing.auxLossCoef > 0) this.addLoss(() => this.balancer.auxLossTerm());
    this.kernelInitializer = kernelInit;
    this.biasInitializer = biasInit;
    this.supportsMasking = false;
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = singleShape(inputShape);
    const hidden = shape[shape.length - 1];
    if (shape.length < 2 || shape.length > 3 || hidden == null || !Number.isInteger(hidden) || hidden < 1) {
      throw new Error(`FusedMoE: input must be [T,H] or [B,S,H] with a known hidden size H, got shape ` +
          `[${shape.map(d => d ?? 'null')}]`);
    }
    const specs = weightSpecs(this.options, hidden);
    checkWeightSizes(this.name, specs);  // before anything is allocated
    this.hiddenSize = hidden;
    for (const spec of specs) {
      const init = spec.kind === 'bias' ? this.biasInitializer : this.kernelInitializer;
      this.weightVariables.set(spec.name, this.addWeight(spec.name, spec.shape, 'float32', init, undefined, spec.trainable));
    }
    this.inputSpec = [{minNDim: 2, maxNDim: 3, axes: {[-1]: hidden}}];
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    return singleShape(inputShape);
  }

  /**
   * Builds the layer for inputs of hidden size H the way apply() in a model does, so that its weights are named
   * `layerName/weightName` (a plain build() call names them without the layer scope).
   */
  buildFor(hiddenSize: number): this {
    if (!this.built) this.apply(tfl.input({batchShape: [null, hiddenSize]}));
    return this;
  }

  /** Sets weights by name (any subset); each value must have the weight's shape. */
  setNamedWeights(values: Partial<Record<FusedMoEWeightName, tf.Tensor>>): void {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    // Every entry is checked before the first write: all or nothing.
    const shapes = new Map([...this.weightVariables].map(([name, v]) => [name as string, v.shape as number[]]));
    for (const [name, value] of checkNamedWeights(this.name, values, shapes)) {
      this.weightVariables.get(name as FusedMoEWeightName)!.write(value);
    }
  }

  /**
   * Copies the weights onto the active tfjs backend with asynchronous reads. Needed in Node after running on
   * webgpu and switching to cpu (tfjs's own synchronous move cannot read webgpu there); harmless otherwise.
   * Resolves to the number of weights moved.
   */
  async moveWeightsToBackend(): Promise<number> {
    if (!this.built) return 0;
    return moveVariablesToActiveBackend(this.weightVariables.values());
  }

  /** Which implementation a call would run now (for logs and demos); throws like call() when it is unavailable. */
  selectedPath(): string {
    return selectMoeForward(this.options.backend).path;
  }

  /** The current weight values by name (the variables' own tensors: do not dispose them). */
  namedWeights(): FusedMoEWeights {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    const out: Partial<Record<FusedMoEWeightName, tf.Tensor>> = {};
    for (const [name, variable] of this.weightVariables) out[name] = variable.read();
    return out as FusedMoEWeights;
  }

  /**
   * Per-expert loads of the last call: int32 [E], the (token, slot) pairs routed to each expert. Kept only with
   * recordExpertLoad (on by default with a balancing option); null before the first call. Owned by the layer.
   */
  expertLoad(): tf.Tensor1D | null {
    return this.balancer.expertLoad();
  }

  /**
   * The auxiliary load-balancing loss of the last training call (auxLossCoef > 0), while the scope of that call
   * lives (e.g. inside optimizer.minimize), else null. model.fit adds it by itself through the layer's losses.
   */
  auxLoss(): tf.Scalar | null {
    return this.balancer.lastAuxLoss();
  }

  /**
   * DeepSeek's auxiliary-loss-free step from the last recorded loads: gate_correction_bias += rate *
   * sign(mean load - load). Training calls do this by themselves when biasUpdateRate > 0; this is for manual
   * schedules. Returns false when no loads were recorded yet.
   */
  updateCorrectionBias(rate: number = this.balancer.options.biasUpdateRate): boolean {
    const variable = this.weightVariables.get('gate_correction_bias');
    if (variable == null) {
      throw new Error(`FusedMoE '${this.name}': updateCorrectionBias needs useCorrectionBias (no gate_correction_bias)`);
    }
    if (typeof rate !== 'number' || !Number.isFinite(rate)) {
      throw new Error(`FusedMoE '${this.name}': updateCorrectionBias: argument 'rate' must be a finite number, got ${rate}`);
    }
    return this.balancer.updateCorrectionBias(rate, variable.read() as tf.Tensor1D, v => variable.write(v));
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    const x = Array.isArray(inputs) ? singleTensor(inputs) : inputs;
    checkInput(this.name, x);
    const hidden = this.hiddenSize;
    if (x.rank < 2 || x.rank > 3 || x.shape[x.rank - 1] !== hidden) {
      throw new Error(`FusedMoE '${this.name}': input must be [T,${hidden}] or [B,S,${hidden}], got [${x.shape}]`);
    }
    if (x.dtype !== 'float32') throw new Error(`FusedMoE '${this.name}': input must be float32, got ${x.dtype}`);
    // Chosen before any work so that an unavailable backend fails cleanly, with nothing allocated.
    const selection: MoeForwardSelection = selectMoeForward(this.options.backend);
    const weights = this.namedWeights();
    checkWeightsReadable(this.name, weights);
    const balancing = this.balancer.active;
    // The forward's routing (ids, logits) stays alive past the tidy only when the balancer reads it.
    const [out, topkIds, gatingLogits] = tf.tidy(() => {
      const flat = tf.reshape(x, [-1, hidden!]) as tf.Tensor2D;
      const result = selection.forward(flat, weights, this.options, {owner: this, needsRouting: balancing});
      const {output, topkIds, gatingLogits} =
          result instanceof tf.Tensor ? {output: result} as MoeForwardResult : (result ?? {}) as MoeForwardResult;
      checkForwardOutput(this.name, selection.path, result == null ? result : output, flat.shape[0], hidden!);
      const y = x.rank === 2 ? output : tf.reshape(output, x.shape);
      // An executor may return the ids without the logits (the balancer then computes the logits if it needs them).
      return balancing && topkIds != null ? (gatingLogits != null ? [y, topkIds, gatingLogits] : [y, topkIds]) : [y];
    }) as [tf.Tensor, tf.Tensor2D?, tf.Tensor2D?];
    if (balancing) {
      try {
        const training = kwargs?.training === true;
        const routing = topkIds != null ? {topkIds, gatingLogits} : null;
        this.balancer.observe(x, weights, this.options, training,
            v => this.weightVariables.get('gate_correction_bias')!.write(v), routing);
      } catch (e) {
        out.dispose();
        throw e;
      } finally {
        tf.dispose([topkIds, gatingLogits].filter(t => t != null) as tf.Tensor[]);
      }
    }
    return out;
  }

  /**
   * Like Layer.dispose(), also for a layer that was built directly (build(), as loadHuggingFaceMoe does) and never
   * applied: tfjs counts references only from the first apply(), and refuses to dispose before it.
   */
  override dispose(): ReturnType<tfl.layers.Layer['dispose']> {
    const self = this as unknown as {_refCount: number | null};
    if (this.built && self._refCount === null) self._refCount = 1;
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) {
      releaseMoeLayerState(this);
      this.balancer.dispose();
    }
    return result;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {};
    for (const key of OPTION_KEYS) config[key] = this.options[key];
    config.kernelInitializer = serializeInitializer(this.kernelInitializer);
    config.biasInitializer = serializeInitializer(this.biasInitializer);
    for (const key of LOAD_BALANCING_KEYS) config[key] = this.balancer.options[key];
    return {...super.getConfig(), ...config};
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
      cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T {
    if (config == null || typeof config !== 'object' || Array.isArray(config)) {
      throw new Error(`FusedMoE.fromConfig: argument 'config' must be a config object, got ${describeValue(config)}`);
    }
    // tfjs-layers camel-cases string values when it loads a saved model ('noaux_tc' comes back as 'noauxTc').
    const topkMethod = config.topkMethod === 'noauxTc' ? 'noaux_tc' : config.topkMethod;
    // tfjs's deserializer adds its customObjects to the config: not a layer option.
    const {customObjects: _customObjects, ...options} = config;
    return new cls({...options, topkMethod});
  }
}
tf.serialization.registerClass(FusedMoE);

function singleShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
  if (Array.isArray(inputShape[0])) {
    if (inputShape.length !== 1) throw new Error(`FusedMoE: expects one input, got ${inputShape.length}`);
    return inputShape[0] as tfl.Shape;
  }
  return inputShape as tfl.Shape;
}

function singleTensor(inputs: tf.Tensor[]): tf.Tensor {
  if (inputs.length !== 1) throw new Error(`FusedMoE: expects one input tensor, got ${inputs.length}`);
  return inputs[0];
}
