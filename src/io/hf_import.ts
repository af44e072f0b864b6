/**
 * Hugging Face MoE block -> FusedMoE. Accepts both weight layouts of a block's state dict:
 * - hub files, per expert: experts.{e}.gate_proj/up_proj/down_proj.weight ([I,H], [I,H], [H,I]; Mixtral w1/w3/w2),
 * - transformers v5 in memory, fused: experts.gate_up_proj [E,2I,H] (gate rows first), experts.down_proj [E,H,I]
 *   (Granite's hub files: input_linear.weight / output_linear.weight, the same layout),
 * - gpt-oss: experts.gate_up_proj [E,H,2I] (in x out) with interleaved gate/up columns and down_proj [E,I,H], or
 *   on the hub as MXFP4 `*_blocks` / `*_scales`,
 * and converts torch's Linear layout (out x in) to the layer's [in, out] layout (docs/semantics.md section 8).
 */
import * as tf from '@tensorflow/tfjs-core';

import {FusedMoE} from '../layers/fused_moe.js';
import type {FusedMoEOptions, FusedMoEWeightName, MoeComputeDtype, MoeLayerBackend} from '../layers/fused_moe_config.js';
import {describeValue} from '../ops/limits.js';
import {HfMoeSpec, hfMoeSpec} from './hf_families.js';
import {int4Checkpoint, loadExpertsPacked, loadGptOssMxfp4Experts, loadInt4CheckpointExperts} from './hf_import_experts.js';
import {decodeRawSafetensor, isRawSafetensor, RawSafetensor} from './safetensors.js';

/** Options of {@link loadHuggingFaceMoe}. */
export interface LoadHuggingFaceMoeOptions {
  /** Prefix of the block's tensor names, e.g. 'model.layers.3.mlp.' (a trailing '.' is added if missing). */
  prefix?: string;
  /** The layer's backend setting (default 'auto'). */
  backend?: MoeLayerBackend;
  /** The layer's computeDtype (default 'float32'; 'bfloat16'/'float16' on backend 'cuda'). */
  computeDtype?: MoeComputeDtype;
  /** The layer's name. */
  name?: string;
  /**
   * How the layer stores its routed experts (docs/formats.md; default 'float32', for GPTQ / AWQ checkpoints 'int4'
   * with the checkpoint's group size and zero points); converted expert by expert.
   */
  expertWeightFormat?: FusedMoEOptions['expertWeightFormat'];
  /** The layer's quantGroupSize (int4 32 by default, a GPTQ / AWQ checkpoint's own; int8 one scale per column). */
  quantGroupSize?: number | null;
  /** The layer's quantZeroPoint (int4 only; default false, true for a GPTQ / AWQ checkpoint into 'int4'). */
  quantZeroPoint?: boolean;
}

/**
 * Tensors of a Hugging Face MoE block by their state-dict names (prefix included): tf.Tensors, or raw F16/BF16
 * data as readSafetensors(bytes, {keepDtype: true}) gives.
 */
export type HfWeights = Record<string, tf.Tensor | RawSafetensor> | Map<string, tf.Tensor | RawSafetensor>;

function fail(what: string): never {
  throw new Error(`loadHuggingFaceMoe: ${what}`);
}

export class WeightSource {
  private readonly map: Map<string, tf.Tensor | RawSafetensor>;
  constructor(weights: HfWeights, readonly prefix: string) {
    if (weights == null || typeof weights !== 'object') {
      fail(`argument 'weights' must map tensor names to tf.Tensors, got ${describeValue(weights)}`);
    }
    this.map = weights instanceof Map ? weights : new Map(Object.entries(weights));
    // Every entry of the block is checked before any conversion starts (all or nothing).
    for (const [name, t] of this.map) {
      if (!name.startsWith(prefix) || isRawSafetensor(t) || (t instanceof tf.Tensor && !t.isDisposed)) continue;
      fail(`weight '${name}' must be a live tf.Tensor or raw data of readSafetensors' keepDtype, got ${describeValue(t)}`);
    }
  }

  /** prefix + rel; '../name' is a sibling of the block (its prefix without the last component). */
  name(rel: string): string {
    if (!rel.startsWith('../')) return this.prefix + rel;
    const parent = this.prefix.slice(0, this.prefix.slice(0, -1).lastIndexOf('.') + 1);
    return parent + rel.slice(3);
  }

  has(rel: string): boolean {
    return this.map.has(this.name(rel));
  }

  /** The tensor named prefix + rel, checked to be float32 of the given shape (raw F16/BF16 data decoded: new). */
  get(rel: string, shape: number[], meaning: string): tf.Tensor {
    const t = this.source(rel, shape, meaning);
    return t instanceof tf.Tensor ? t : decodeRawSafetensor(this.name(rel), t);
  }

  /** The tensor or raw F16/BF16 data named prefix + rel, checked to have the given shape. */
  source(rel: string, shape: number[], meaning: string): tf.Tensor | RawSafetensor {
    const name = this.name(rel);
    const t = this.map.get(name);
    if (t == null) fail(`missing weight '${name}' (${meaning}, expected shape [${shape}])${this.hint()}`);
    if (isRawSafetensor(t)) {
      if (t.dtype !== 'F16' && t.dtype !== 'BF16') fail(`weight '${name}' must be float (F16/BF16/F32), got ${t.dtype}`);
    } else {
      if (!(t instanceof tf.Tensor) || t.isDisposed) fail(`weight '${name}' must be a live tf.Tensor or raw F16/BF16 data`);
      if (t.dtype !== 'float32') fail(`weight '${name}' must be float32, got ${t.dtype}`);
    }
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!same) fail(`weight '${name}' (${meaning}) must have shape [${shape}], got [${t.shape}]`);
    return t;
  }

  /** Whether any expert tensor is raw data (then the experts load through the packed path). */
  hasRawExperts(): boolean {
    return [...this.map].some(([name, t]) => name.startsWith(this.prefix + 'experts.') && isRawSafetensor(t));
  }

  /** The first dimension of prefix + rel, or -1 when absent. */
  rows(rel: string): number {
    return this.map.get(this.name(rel))?.shape[0] ?? -1;
  }

  /**
   * As source, for a tensor of one of `dtypes`: tf dtypes ('int32': also U8 / I32 files decoded) or raw ones
   * ('U8', 'F16': readSafetensors keepDtype).
   */
  getAny(rel: string, shape: number[], meaning: string, dtypes: string[]): tf.Tensor | RawSafetensor {
    const name = this.name(rel);
    const t = this.map.get(name);
    if (t == null) fail(`missing weight '${name}' (${meaning}, expected shape [${shape}])${this.hint()}`);
    const raw = isRawSafetensor(t);
    const live = t instanceof tf.Tensor && !t.isDisposed;
    if (!(raw || live) || !dtypes.includes(t.dtype)) {
      // Raw dtypes are the file's (upper case), tensor dtypes tfjs's.
      const wanted = dtypes.map(d => (/^[A-Z]/.test(d) ? `raw ${d} data` : `a live ${d} tf.Tensor`)).join(' or ');
      const got = raw ? `raw ${t.dtype}` : live ? `a ${t.dtype} tensor` :
          t instanceof tf.Tensor ? 'a disposed tensor' : describeValue(t);
      fail(`weight '${name}' (${meaning}) must be ${wanted}, got ${got}`);
    }
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!same) fail(`weight '${name}' (${meaning}) must have shape [${shape}], got [${t.shape}]`);
    return t;
  }

  /** The rank of prefix + rel, or -1 when absent. */
  rank(rel: string): number {
    return this.map.get(this.name(rel))?.shape.length ?? -1;
  }

  first(rels: string[]): string | undefined {
    return rels.find(rel => this.has(rel));
  }

  private hint(): string {
    const near = [...this.map.keys()].filter(k => k.startsWith(this.prefix)).slice(0, 8);
    return near.length > 0 ? `; names under prefix '${this.prefix}' include: ${near.join(', ')}` :
        `; no weight name starts with prefix '${this.prefix}'`;
  }
}

/** [..., 2I] with element 2i = gate i, 2i+1 = up i -> [..., 2I] gate half first (the layer's order). */
function deinterleaveLast(t: tf.Tensor): tf.Tensor {
  const lead = t.shape.slice(0, -1), I = t.shape[t.rank - 1] / 2;
  const pairs = tf.reshape(t, [...lead, I, 2]);
  const perm = [...lead.map((_, i) => i), lead.length + 1, lead.length];
  return tf.reshape(tf.transpose(pairs, perm), t.shape);
}

/** The layer's weights (in the layer's layout) from a block's HF tensors; new tensors, owned by the caller. */
function convertWeights(spec: HfMoeSpec, src: WeightSource, biasRel: string | null, withBias: boolean,
                        experts: boolean): Map<FusedMoEWeightName, tf.Tensor> {
  const {hiddenSize: H, naming} = spec;
  const {numExperts: E, moeIntermediateSize: I, sharedExpertIntermediateSize: S} = spec.options;
  // The router and its selection bias also score the Z identity experts (LongCat-Flash).
  const N = E + spec.options.zeroExperts;
  const out = new Map<FusedMoEWeightName, tf.Tensor>();
  const {gate: g, up: u, down: d} = naming.expertProj;
  const fusedGateUp = src.first(naming.fusedGateUp);
  const fused = fusedGateUp != null;
  const router = src.first(naming.router) ?? naming.router[0];
  // torch Linear stores [out, in]; the layer stores [in, out].
  out.set('gate_weight', tf.transpose(src.get(router, [N, H], N > E ? 'router weight [E+Z,H]' : 'router weight [E,H]')));
  if (naming.routerBias != null) out.set('gate_bias', tf.clone(src.get(naming.routerBias, [N], N > E ? 'router bias [E+Z]' : 'router bias [E]')));
  if (biasRel != null) {
    // DeepSeek-V3 stores [E]; ERNIE's moe_statics [1,E] (one row per expert group).
    const shape = src.rank(biasRel) === 2 ? [1, N] : [N];
    out.set('gate_correction_bias', tf.reshape(src.get(biasRel, shape, 'selection bias [E] or [1,E]'), [N]));
  }
  if (naming.fusedLayout === 'in_out' && fused) {
    out.set('up_gate_proj_weight', tf.clone(src.get(fusedGateUp!, [E, H, 2 * I], 'fused experts [E,H,2I]')));
    const dn = naming.fusedDown[0];
    out.set('down_proj_weight', tf.clone(src.get(dn, [E, I, H], 'fused experts [E,I,H]')));
    if (withBias) fail(`weight '${src.name(`${fusedGateUp}_bias`)}': ${spec.family} has no expert biases`);
  } else if (naming.fusedLayout === 'in_out_interleaved') {
    const gu = naming.fusedGateUp[0], dn = naming.fusedDown[0];
    // Hub MXFP4 experts load through loadGptOssMxfp4Experts (experts false here).
    if (experts) {
      out.set('up_gate_proj_weight',
          deinterleaveLast(src.get(gu, [E, H, 2 * I], 'fused experts [E,H,2I], gate/up interleaved')));
      out.set('down_proj_weight', tf.clone(src.get(dn, [E, I, H], 'fused experts [E,I,H]')));
    }
    if (withBias) {
      out.set('up_gate_proj_bias',
          deinterleaveLast(src.get(`${gu}_bias`, [E, 2 * I], 'expert biases [E,2I], gate/up interleaved')));
      out.set('down_proj_bias', tf.clone(src.get(`${dn}_bias`, [E, H], 'expert biases [E,H]')));
    }
  } else if (fused) {
    if (experts) {
      const down = src.first(naming.fusedDown) ?? naming.fusedDown[0];
      // LongCat-Flash keeps E+Z rows in memory, of which the identity experts' are never read.
      const rows = N > E && src.rows(fusedGateUp!) === N ? N : E;
      const gateUp = src.get(fusedGateUp!, [rows, 2 * I, H], rows > E ? 'fused experts [E+Z,2I,H]' : 'fused experts [E,2I,H]');
      out.set('up_gate_proj_weight',
          tf.transpose(rows > E ? tf.slice(gateUp, 0, E) : gateUp, [0, 2, 1]));
      out.set('down_proj_weight', tf.transpose(src.get(down, [E, H, I], 'fused experts [E,H,I]'), [0, 2, 1]));
    }
    if (withBias) {
      out.set('up_gate_proj_bias', tf.clone(src.get('experts.gate_up_proj_bias', [E, 2 * I], 'expert biases [E,2I]')));
      out.set('down_proj_bias', tf.clone(src.get('experts.down_proj_bias', [E, H], 'expert biases [E,H]')));
    }
  } else {
    const each = (proj: string, shape: number[], suffix = 'weight') => Array.from({length: E},
        (_, e) => src.get(`experts.${e}.${proj}.${suffix}`, shape, `expert ${e} ${proj}.${suffix}`));
    if (experts) {
      const gates = tf.stack(each(g, [I, H])), ups = tf.stack(each(u, [I, H]));
      out.set('up_gate_proj_weight', tf.transpose(tf.concat([gates, ups], 1), [0, 2, 1]));
      out.set('down_proj_weight', tf.transpose(tf.stack(each(d, [H, I])), [0, 2, 1]));
    }
    if (withBias) {
      out.set('up_gate_proj_bias', tf.concat([tf.stack(each(g, [I], 'bias')), tf.stack(each(u, [I], 'bias'))], 1));
      out.set('down_proj_bias', tf.stack(each(d, [H], 'bias')));
    }
  }
  if (S > 0) {
    const m = naming.shared;
    if (naming.sharedFused) {
      // Granite: one [2S,H] input_linear, gate rows first, as the layer's gate-then-up columns once transposed.
      out.set('shared_up_gate_proj_weight',
          tf.transpose(src.get(`${m}.input_linear.weight`, [2 * S, H], 'shared MLP input_linear [2S,H]')));
      out.set('shared_down_proj_weight',
          tf.transpose(src.get(`${m}.output_linear.weight`, [H, S], 'shared MLP output_linear [H,S]')));
    } else {
      const sg = src.get(`${m}.gate_proj.weight`, [S, H], 'shared expert gate_proj');
      const su = src.get(`${m}.up_proj.weight`, [S, H], 'shared expert up_proj');
      out.set('shared_up_gate_proj_weight', tf.transpose(tf.concat([sg, su], 0)));
      out.set('shared_down_proj_weight',
          tf.transpose(src.get(`${m}.down_proj.weight`, [H, S], 'shared expert down_proj')));
    }
    for (const proj of ['gate_proj', 'up_proj', 'down_proj', 'input_linear', 'output_linear']) {
      if (src.has(`${m}.${proj}.bias`)) {
        fail(`weight '${src.name(`${m}.${proj}.bias`)}': shared expert biases are not supported by FusedMoE`);
      }
    }
    if (spec.options.sharedExpertGate) {
      out.set('shared_expert_gate_weight', tf.transpose(src.get(naming.sharedGate, [1, H], 'shared expert gate [1,H]')));
    }
  }
  return out;
}

/**
 * Builds a FusedMoE from a Hugging Face MoE block: `config` is the model's parsed config.json (a family of
 * HfFamily, or a multimodal config holding one under text_config), `weights` the block's tensors (either layout),
 * named as in its state dict under `prefix` (granitemoeshared: the block's prefix; its shared_mlp is read beside
 * it). The returned layer is built and holds copies of the weights (the
 * caller still owns `weights`). Throws naming the missing or mis-shaped tensor, or the unknown model type.
 * With a packed expertWeightFormat, or raw F16/BF16 expert data (readSafetensors keepDtype), the experts are
 * converted one at a time on the host (peak: the packed layer plus one expert in float32; raw BF16 into
 * 'bfloat16' and F16 into 'float16' copy the 16-bit patterns, no float32 at all). gpt-oss's hub MXFP4 experts
 * load into 'mxfp4' as the same codes, GPTQ / AWQ int4 experts (detected by their `qweight` tensors, the scheme
 * read from config.json's quantization_config) into 'int4' as the same codes; into any other format both go
 * through their exact dequantization (docs/formats.md 5).
 */
export function loadHuggingFaceMoe(config: unknown, weights: HfWeights, options: LoadHuggingFaceMoeOptions = {}):
    FusedMoE {
  if (options == null || typeof options !== 'object' || Array.isArray(options)) {
    fail(`argument 'options' must be an options object {prefix?, backend?, computeDtype?, name?}, got ${
        describeValue(options)}`);
  }
  const spec = hfMoeSpec(config);
  let prefix = options.prefix ?? '';
  if (typeof prefix !== 'string') fail(`option 'prefix' must be a string, got ${describeValue(prefix)}`);
  if (prefix !== '' && !prefix.endsWith('.')) prefix += '.';
  const src = new WeightSource(weights, prefix);
  const {expertProj, fusedGateUp, router} = spec.naming;
  const mxfp4 = spec.naming.fusedLayout === 'in_out_interleaved' && src.has(`${fusedGateUp[0]}_blocks`);
  const fused = src.first(fusedGateUp) != null || mxfp4;
  const int4 = spec.naming.fusedLayout === 'out_in' && !fused ? int4Checkpoint(config, spec, src) : null;
  if (spec.options.sharedExpertIntermediateSize > 0) {
    for (const proj of ['gate_proj', 'up_proj', 'down_proj', 'input_linear', 'output_linear']) {
      const rel = `${spec.naming.shared}.${proj}.qweight`;
      if (src.has(rel)) {
        fail(`weight '${src.name(rel)}': quantized shared experts are not supported (only the routed experts load ` +
            'from GPTQ / AWQ)');
      }
    }
  }
  if (!fused && int4 == null && !src.has(`experts.0.${expertProj.gate}.weight`)) {
    fail(`found neither fused experts ('${prefix}${fusedGateUp[0]}') nor per-expert weights ` +
        `('${prefix}experts.0.${expertProj.gate}.weight') for ${spec.family}` +
        (src.first(router) != null ? '' : ` (and no router '${prefix}${router[0]}': is the prefix right?)`));
  }
  const withBias = fused ? src.has(`${fusedGateUp[0]}_bias`) : src.has(`experts.0.${expertProj.gate}.bias`);
  const biasRel = src.first(spec.naming.correctionBias);
  // DeepSeek-V3's bias is part of its routing; ERNIE checkpoints without aux-free balancing simply lack it.
  if (spec.biasRequired && biasRel == null) {
    fail(`missing weight '${prefix}${spec.naming.correctionBias[0]}' (${spec.family} selection bias, shape [E])`);
  }
  const useBias = spec.options.useCorrectionBias && biasRel != null;
  // A GPTQ / AWQ checkpoint loads by default into 'int4' with its own group size and zero points: the same codes.
  const format = options.expertWeightFormat ?? (int4 != null ? 'int4' : 'float32');
  const asCheckpoint = int4 != null && format === 'int4';
  const layerOptions: FusedMoEOptions = {...spec.options, useCorrectionBias: useBias, withBias,
    backend: options.backend ?? 'auto', computeDtype: options.computeDtype ?? 'float32',
    expertWeightFormat: format, quantGroupSize: options.quantGroupSize ?? (asCheckpoint ? int4.groupSize : null),
    quantZeroPoint: options.quantZeroPoint ?? asCheckpoint};

  // Expert by expert for the torch [out, in] layouts with E experts, hub MXFP4 and GPTQ / AWQ; other layouts
  // (gpt-oss and llama4 in memory, LongCat's E+Z rows) are read in float32 and quantized by the layer.
  const packedPath = mxfp4 || int4 != null || spec.naming.fusedLayout === 'out_in' &&
      (!fused || src.rows(src.first(fusedGateUp)!) === spec.options.numExperts) &&
      (layerOptions.expertWeightFormat !== 'float32' || src.hasRawExperts());
  // The layer (and its option checks) first: a bad format option fails before any conversion.
  const probe = new FusedMoE({...layerOptions, name: options.name});
  const experts = !packedPath ? null : mxfp4 ? loadGptOssMxfp4Experts(spec, src, probe.options) :
      int4 != null ? loadInt4CheckpointExperts(spec, src, int4, probe.options) :
      loadExpertsPacked(spec, src, fused, probe.options);
  let converted: Partial<Record<FusedMoEWeightName, tf.Tensor>> = {};
  let layer: FusedMoE | null = null;
  try {
    converted = tf.tidy(() => Object.fromEntries(convertWeights(spec, src, useBias ? biasRel! : null, withBias, !packedPath)));
    layer = probe.buildFor(spec.hiddenSize, experts ?? undefined);
    layer.setNamedWeights(converted);
    return layer;
  } catch (e) {
    if (layer?.built) layer.dispose();
    throw e;
  } finally {
    Object.values(converted).forEach(t => t!.dispose());
    if (experts != null) tf.dispose(Object.values(experts) as unknown as tf.TensorContainer);
  }
}

