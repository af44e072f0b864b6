/**
 * FusedMoE: a Mixture-of-Experts feed-forward block as a tf.layers Layer (docs/semantics.md section 7).
 * Weights are created in build() under fixed names (see weightSpecs), so models save and load through tfjs's
 * own handlers; call() picks an implementation per call (backend_selection.ts) and leaves no tensor behind.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import {ExpertWeightName, OPTION_TABLE} from '../executor/layer_schema.js';
import {describeValue} from '../ops/limits.js';
import type {QuantizedExpertWeights, QuantizeExpertWeightsOptions} from '../ops/quantize_expert_weights.js';
import {DeviceActivation, MoeForwardResult, MoeForwardSelection, releaseMoeLayerState, selectMoeDeviceForward,
  selectMoeForward} from './backend_selection.js';
import {ExpertWeightStore, isExpertWeightName} from './expert_weight_store.js';
import {FusedMoEArgs, FusedMoEOptions, FusedMoEWeightName, FusedMoEWeights, Initializer, OPTION_KEYS, resolveInitializer,
  resolveOptions, serializeInitializer, weightSpecs} from './fused_moe_config.js';
import {checkArgKeys, checkForwardOutput, checkInput, checkNamedWeights, checkWeightSizes} from './fused_moe_checks.js';
import {LOAD_BALANCING_KEYS, LoadBalancer, resolveLoadBalancing} from './load_balancing.js';
import {checkWeightReadable, moveVariablesToActiveBackend} from './weight_residency.js';

/** A Mixture-of-Experts feed-forward block as a tf.layers Layer (className 'FusedMoE'): routing, the routed SwiGLU experts,
 * combine, optional latent projections and shared experts, on the best path of the active backend (section 7 of
 * docs/semantics.md). Serializable, trainable, imported from Hugging Face by loadHuggingFaceMoe. */
export class FusedMoE extends tfl.layers.Layer {
  static className = 'FusedMoE';

  /** The resolved options (quantizeExperts replaces the expert weight format fields). */
  options: Readonly<FusedMoEOptions>;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly weightVariables = new Map<FusedMoEWeightName, tfl.LayerVariable>();
  private hiddenSize: number | null = null;
  /** The routed experts' weights in a packed format (null while the layer stores them as float32 variables). */
  private packed: ExpertWeightStore | null = null;
  private warnedNotTrained = false;
  private initialExperts: Partial<Record<ExpertWeightName, QuantizedExpertWeights>> | null = null;
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
    if (this.options.expertWeightFormat !== 'float32') this.packed = new ExpertWeightStore(this, this.options);
    for (const spec of specs) {
      const initial = isExpertWeightName(spec.name) ? this.initialExperts?.[spec.name] : undefined;
      if (initial != null) this.expertStore().check(spec.name as ExpertWeightName, initial, spec.shape);
      if (this.packed != null && isExpertWeightName(spec.name)) {
        // Packed weights start at zero unless given (they are set by setNamedWeights, a loader or a saved model).
        this.packed.create(spec.name, spec.shape as [number, number, number], (name, shape, dtype, part) =>
            this.addWeight(name, shape, dtype, initial != null ? sharedData(initial[part]!) : tfl.initializers.zeros(),
                           undefined, false));
        continue;
      }
      const init = initial != null ? sharedData(initial.values) :
          spec.kind === 'bias' ? this.biasInitializer : this.kernelInitializer;
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
  buildFor(hiddenSize: number, initialExperts?: Partial<Record<ExpertWeightName, QuantizedExpertWeights>>): this {
    // initialExperts (loaders): expert weights of the layer's format that become its variables' data directly,
    // so that loading never holds a second copy of the layer (not even the zeros build() would allocate).
    if (!this.built) {
      this.initialExperts = initialExperts ?? null;
      try {
        this.apply(tfl.input({batchShape: [null, hiddenSize]}));
      } finally {
        this.initialExperts = null;
      }
    }
    return this;
  }

  /**
   * Sets weights by name (any subset); each value must have the weight's shape. The expert weights also take a
   * QuantizedExpertWeights of the layer's format (stored as is, sharing its tensors' data); float32 expert weights
   * given to a layer of a packed format are quantized expert by expert (on a backend readable synchronously).
   */
  setNamedWeights(values: Partial<Record<FusedMoEWeightName, tf.Tensor | QuantizedExpertWeights>>): void {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    // Every entry is checked before the first write: all or nothing.
    const isObject = values != null && typeof values === 'object' && !Array.isArray(values) && !(values instanceof tf.Tensor);
    const rest: Record<string, unknown> = {};
    const experts: Array<[ExpertWeightName, tf.Tensor | QuantizedExpertWeights]> = [];
    for (const [name, value] of isObject ? Object.entries(values) : []) {
      if (this.packed != null && isExpertWeightName(name)) {
        if (value == null) continue;
        this.packed.check(name, value);
        experts.push([name, value]);
      } else {
        rest[name] = this.packed != null ? value :
            this.floatExpertValue(name as FusedMoEWeightName, value as tf.Tensor | QuantizedExpertWeights | undefined);
      }
    }
    const shapes = new Map([...this.weightVariables].map(([name, v]) => [name as string, v.shape as number[]]));
    const checked = checkNamedWeights(this.name, isObject ? rest : values, shapes);
    // Float32 expert weights of a packed layer are quantized before any write: quantizing checks them too.
    const prepared: Array<[ExpertWeightName, QuantizedExpertWeights, boolean]> = [];
    try {
      for (const [name, value] of experts) {
        let q: QuantizedExpertWeights;
        try {
          q = this.packed!.prepare(value);
        } catch (e) {
          throw new Error(`FusedMoE '${this.name}': setNamedWeights: weight '${name}': ${(e as Error).message}`);
        }
        prepared.push([name, q, q !== value]);
      }
      for (const [name, value] of checked) this.weightVariables.get(name as FusedMoEWeightName)!.write(value);
      for (const [name, q] of prepared) this.packed!.store(name, q);
    } finally {
      for (const [, q, owned] of prepared) if (owned) tf.dispose(q as unknown as tf.TensorContainer);
    }
  }

  /**
   * The stored expert weights as a QuantizedExpertWeights ([E,K,N] layout; format 'float32' wraps the float
   * variable). Its tensors are the layer's variables' own: do not dispose them.
   */
  expertWeights(name: ExpertWeightName): QuantizedExpertWeights {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    if (!isExpertWeightName(name)) {
      throw new Error(`FusedMoE '${this.name}': expertWeights: argument 'name' must be 'up_gate_proj_weight' or ` +
          `'down_proj_weight', got ${describeValue(name)}`);
    }
    if (this.packed != null) return this.packed.read(name);
    const values = this.weightVariables.get(name)!.read();
    return {format: 'float32', shape: values.shape as [number, number, number], transposed: false, groupSize: 0,
      zeroPoint: false, values};
  }

  /**
   * Converts the built layer's expert weights to `format` in place ({groupSize, zeroPoint} as quantizeExpertWeights
   * takes them), freeing the previous tensors. From a packed format the weights are first dequantized exactly.
   * Runs on the host: on webgpu use quantizeExpertWeightsAsync and setNamedWeights on a layer of that format.
   */
  quantizeExperts(format: FusedMoEOptions['expertWeightFormat'],
                  options: Omit<QuantizeExpertWeightsOptions, 'transposed'> = {}): void {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    if (options == null || typeof options !== 'object') {
      throw new Error(`FusedMoE '${this.name}': quantizeExperts: argument 'options' must be an object, got ${options}`);
    }
    const next = resolveOptions({...this.options, expertWeightFormat: format,
      quantGroupSize: options.groupSize ?? null, quantZeroPoint: options.zeroPoint ?? false});
    const current = (['up_gate_proj_weight', 'down_proj_weight'] as const).map(name => this.expertWeights(name));
    const store = new ExpertWeightStore(this, next);
    const converted = current.map(q => store.convert(q));
    try {
      // Every conversion succeeded: now the old weights go.
      for (const name of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
        if (this.packed != null) this.packed.free(name, w => this.dropWeight(w));
        else this.dropWeight(this.weightVariables.get(name)!);
        this.weightVariables.delete(name);
      }
      this.options = next;
      this.packed = next.expertWeightFormat === 'float32' ? null : store;
      const prefix = this.weightVariables.get('gate_weight')!.originalName.replace(/gate_weight$/, '');
      converted.forEach((q, i) => {
        const name = (['up_gate_proj_weight', 'down_proj_weight'] as const)[i];
        if (this.packed == null) {
          const v = this.addWeight(prefix + name, q.shape, 'float32', tfl.initializers.zeros(), undefined, true);
          this.weightVariables.set(name, v);
          v.write(q.values);
        } else {
          this.packed.create(name, q.shape, (n, shape, dtype) =>
              this.addWeight(prefix + n, shape, dtype, tfl.initializers.zeros(), undefined, false));
          this.packed.write(name, q);
        }
      });
    } finally {
      converted.forEach(q => tf.dispose(q as unknown as tf.TensorContainer));
    }
  }

  /** Removes a variable from the layer's weight lists and frees it. */
  private dropWeight(v: tfl.LayerVariable): void {
    const self = this as unknown as {_trainableWeights: tfl.LayerVariable[], _nonTrainableWeights: tfl.LayerVariable[],
      _addedWeightNames: string[]};
    self._trainableWeights = self._trainableWeights.filter(w => w !== v);
    self._nonTrainableWeights = self._nonTrainableWeights.filter(w => w !== v);
    const short = v.originalName.split('/').pop()!;
    self._addedWeightNames = self._addedWeightNames.filter(n => n !== short && n !== v.originalName);
    v.dispose();
  }

  /** The store of the layer's format (a float32 layer checks its initial expert weights against one too). */
  private expertStore(): ExpertWeightStore {
    return this.packed ?? new ExpertWeightStore(this, this.options);
  }

  /** A float32 layer's expert weight given as a 'float32' QuantizedExpertWeights is its values tensor. */
  private floatExpertValue(name: FusedMoEWeightName, value: tf.Tensor | QuantizedExpertWeights | undefined):
      tf.Tensor | QuantizedExpertWeights | undefined {
    if (value == null || value instanceof tf.Tensor || !isExpertWeightName(name)) return value;
    if (value.format === 'float32' && value.transposed === false) return value.values;
    throw new Error(`FusedMoE '${this.name}': weight '${name}' of a layer with expertWeightFormat 'float32' must be a ` +
        `float32 tensor, got a '${value.format}' QuantizedExpertWeights${value.transposed ? ' (transposed)' : ''} ` +
        `(construct the layer with expertWeightFormat '${value.format}', or call quantizeExperts first)`);
  }

  private weightNames(): string[] {
    return [...this.weightVariables.keys(), ...(this.packed != null ? ['up_gate_proj_weight', 'down_proj_weight'] : [])];
  }

  /**
   * Copies the weights onto the active tfjs backend with asynchronous reads. Needed in Node after running on
   * webgpu and switching to cpu (tfjs's own synchronous move cannot read webgpu there); harmless otherwise.
   * Resolves to the number of weights moved.
   */
  async moveWeightsToBackend(): Promise<number> {
    if (!this.built) return 0;
    return moveVariablesToActiveBackend([...this.weightVariables.values(), ...(this.packed?.allVariables() ?? [])]);
  }

  /** Which implementation a call would run now (for logs and demos); throws like call() when it is unavailable. */
  selectedPath(): string {
    return selectMoeForward(this.options.backend).path;
  }

  /** The current weight values by name (the variables' own tensors: do not dispose them). */
  namedWeights(): FusedMoEWeights {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    const out: Partial<Record<FusedMoEWeightName, tf.Tensor | QuantizedExpertWeights>> = {};
    for (const [name, variable] of this.weightVariables) out[name] = variable.read();
    if (this.packed != null) {
      out.up_gate_proj_weight = this.packed.read('up_gate_proj_weight');
      out.down_proj_weight = this.packed.read('down_proj_weight');
    }
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

  /**
   * The forward with the activations kept on the device of the layer's executor (backend 'cuda'): x is a float32
   * tensor [T,H] or [B,S,H] (uploaded) or the DeviceActivation [T,H] that a previous layer's applyDevice returned;
   * the result is a new DeviceActivation [T,H] that the caller owns: pass it to the next layer, read it with
   * read() / toTensor(shape), dispose() it. A stack of layers then pays one upload and one download. Inference
   * only: load balancing (expert loads, aux loss, bias updates) needs apply().
   */
  applyDevice(x: tf.Tensor | DeviceActivation): DeviceActivation {
    if (!this.built) throw new Error(`FusedMoE '${this.name}': the layer is not built yet (call build() or apply())`);
    const hidden = this.hiddenSize!;
    const forwardDevice = selectMoeDeviceForward(this.options.backend);
    if (this.balancer.active) {
      throw new Error(`FusedMoE '${this.name}': applyDevice does not run load balancing (recordExpertLoad, ` +
          'auxLossCoef, biasUpdateRate); use apply()');
    }
    const weights = this.namedWeights();
    checkLayerWeightsReadable(this.name, weights);
    if (!(x instanceof tf.Tensor)) {
      const shape = (x as DeviceActivation | null)?.shape;
      if (!Array.isArray(shape) || shape.length !== 2 || shape[1] !== hidden || x.disposed) {
        throw new Error(`FusedMoE '${this.name}': input must be a float32 tf.Tensor or a live DeviceActivation ` +
            `[T,${hidden}], got ${x != null && x.disposed === true ? 'a disposed DeviceActivation' : describeValue(x)}`);
      }
      return forwardDevice(x, weights, this.options, {owner: this});
    }
    checkInput(this.name, x);
    if (x.rank < 2 || x.rank > 3 || x.shape[x.rank - 1] !== hidden || x.dtype !== 'float32') {
      throw new Error(`FusedMoE '${this.name}': input must be a float32 tensor [T,${hidden}] or [B,S,${hidden}], ` +
          `got a ${x.dtype} tensor of shape [${x.shape}]`);
    }
    const flat = (x.rank === 2 ? x : tf.reshape(x, [-1, hidden])) as tf.Tensor2D;
    try {
      return forwardDevice(flat, weights, this.options, {owner: this});
    } finally {
      if (flat !== x) flat.dispose();
    }
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
    checkLayerWeightsReadable(this.name, weights);
    if (this.packed != null && kwargs?.training === true && !this.warnedNotTrained) {
      this.warnedNotTrained = true;
      console.warn(`FusedMoE '${this.name}': expert weights stored as '${this.options.expertWeightFormat}' are not ` +
          'trained (the router, shared experts, latent projections and biases are)');
    }
    const balancing = this.balancer.active;
    // The forward's routing (ids, logits) stays alive past the tidy only when the balancer reads it.
    const [out, topkIds, gatingLogits] = tf.tidy(() => {
      // No Reshape kernel for [T,H] (its engine bookkeeping is a visible part of a decode step's JavaScript).
      const flat = (x.rank === 2 ? x : tf.reshape(x, [-1, hidden!])) as tf.Tensor2D;
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
    // tfjs's deserializer adds its customObjects to the config: not a layer option.
    const {customObjects: _customObjects, ...options} = config;
    // tfjs-layers camel-cases string values when it loads a saved model ('noaux_tc' comes back as 'noauxTc',
    // 'clamped_swiglu' as 'clampedSwiglu'): map every enum option's camel-cased value back to its table spelling.
    const camel = (value: string) => value.replace(/[_-](.)/g, (_, c: string) => c.toUpperCase());
    for (const spec of OPTION_TABLE) {
      const match = spec.type === 'enum' ? spec.values!.find(v => camel(v) === options[spec.name]) : undefined;
      if (match !== undefined) options[spec.name] = match;
    }
    return new cls(options);
  }
}
tf.serialization.registerClass(FusedMoE);

/** An initializer whose value is `t`'s data itself (a variable made from it shares the data: no copy). */
function sharedData(t: tf.Tensor): Initializer {
  return {apply: () => tf.clone(t)} as unknown as Initializer;
}

/**
 * checkWeightReadable for every weight of the layer (a packed one's values, scales and zero points by part),
 * walked in place: a decode step's JavaScript would otherwise build a record of them on every call.
 */
function checkLayerWeightsReadable(layerName: string, w: FusedMoEWeights): void {
  const named = w as unknown as Record<string, tf.Tensor | QuantizedExpertWeights | null | undefined>;
  for (const name in named) {
    const v = named[name];
    if (v == null || v instanceof tf.Tensor) {
      checkWeightReadable(layerName, v, name);
    } else {
      checkWeightReadable(layerName, v.values, name, 'values');
      checkWeightReadable(layerName, v.scales, name, 'scales');
      checkWeightReadable(layerName, v.zeroPoints, name, 'zeroPoints');
    }
  }
}

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
