/**
 * Reads spec/fixtures/hf_<name>.json (made by make_hf_fixtures.py with transformers 5.17) and turns a block's
 * in-memory tensors into the float64 reference's weights and config, written from moe-families.md alone
 * (never from src/io), so that the loader and the reference cannot share a misreading.
 */
import {readFileSync, readdirSync} from 'node:fs';

import {RefMoeOptions, RefMoeWeights} from '../reference/moe_reference.js';

export interface FixtureTensor {
  shape: number[];
  data: Float32Array | Uint8Array;
}

interface JsonTensor {
  shape: number[];
  data: number[];
}

export interface HfFixture {
  name: string;
  family: string;
  config: Record<string, unknown>;
  /** The block's prefix in memory (fused names) and in checkpoint files (hub names). */
  prefix: string;
  hub_prefix: string;
  hub_per_expert: boolean;
  input: JsonTensor;
  /** transformers' float64 run, and its float32 run. */
  output: JsonTensor;
  output_dtype: string;
  output_float32: JsonTensor;
  float32_vs_float64: number;
  extra_outputs: (JsonTensor & {dtype: string})[];
  router_outputs: (JsonTensor & {dtype: string})[];
  hub_safetensors_b64: string;
  fused_safetensors_b64?: string;
}

export const FIXTURE_DIR = 'spec/fixtures';

/** Every fixture name (hf_<name>.json) in spec/fixtures. */
export function fixtureNames(): string[] {
  return readdirSync(FIXTURE_DIR).filter(f => /^hf_.*\.json$/.test(f)).map(f => f.slice(3, -5)).sort();
}

export function readFixture(name: string): HfFixture {
  return JSON.parse(readFileSync(`${FIXTURE_DIR}/hf_${name}.json`, 'utf8')) as HfFixture;
}

export function base64Bytes(b64: string): Uint8Array {
  return Uint8Array.from(Buffer.from(b64, 'base64'));
}

/** A minimal safetensors reader for the fixtures' F32 and U8 tensors (the spec's own, not src/io's). */
export function parseSafetensors(bytes: Uint8Array): Map<string, FixtureTensor> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as
      Record<string, {dtype: string, shape: number[], data_offsets: [number, number]}>;
  const base = 8 + headerLength;
  const out = new Map<string, FixtureTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = info.data_offsets;
    const raw = bytes.slice(base + begin, base + end);
    if (info.dtype === 'F32') {
      out.set(name, {shape: info.shape, data: new Float32Array(raw.buffer, 0, (end - begin) / 4)});
    } else if (info.dtype === 'U8') {
      out.set(name, {shape: info.shape, data: raw});
    } else {
      throw new Error(`fixture tensor '${name}' has dtype ${info.dtype}; only F32 and U8 are expected`);
    }
  }
  return out;
}

/** MXFP4 e2m1 code -> value (sign bit 3). */
const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/**
 * gpt-oss's MXFP4 experts: blocks [E, out, in/32, 16] (two codes a byte, low nibble first), scales
 * [E, out, in/32] (power-of-two exponent + 127) -> float values [E, in, out] (the in-memory layout).
 */
export function dequantizeMxfp4(blocks: FixtureTensor, scales: FixtureTensor): FixtureTensor {
  const [E, out, groups, bytesPerGroup] = blocks.shape;
  const inner = groups * bytesPerGroup * 2;
  const values = new Float32Array(E * inner * out);
  for (let e = 0; e < E; e++) {
    for (let o = 0; o < out; o++) {
      for (let g = 0; g < groups; g++) {
        const scale = 2 ** (scales.data[(e * out + o) * groups + g] - 127);
        for (let b = 0; b < bytesPerGroup; b++) {
          const byte = blocks.data[((e * out + o) * groups + g) * bytesPerGroup + b];
          const i = g * bytesPerGroup * 2 + 2 * b;
          values[(e * inner + i) * out + o] = FP4[byte & 15] * scale;
          values[(e * inner + i + 1) * out + o] = FP4[byte >> 4] * scale;
        }
      }
    }
  }
  return {shape: [E, inner, out], data: values};
}

type Config = Record<string, unknown>;

/** Multimodal configs keep the language model under text_config. */
function textConfig(config: Config): Config {
  return (config.text_config as Config | undefined) ?? config;
}

function num(config: Config, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number') throw new Error(`fixture config has no number '${key}' (got ${JSON.stringify(v)})`);
  return v;
}

function bool(config: Config, key: string, fallback?: boolean): boolean {
  const v = config[key] ?? fallback;
  if (typeof v !== 'boolean') throw new Error(`fixture config has no boolean '${key}' (got ${JSON.stringify(v)})`);
  return v;
}

/**
 * What each family's block computes (moe-families.md section 3 and 4), as the reference's options, with the
 * block's in-memory tensor names. `layout` is the fused experts' layout: 'std' gate_up_proj [E,2I,H] gate rows
 * first and down_proj [E,H,I]; 'in_out' gate_up_proj [E,H,2I] gate columns first and down_proj [E,I,H];
 * 'in_out_interleaved' as 'in_out' with column 2i = gate i, 2i+1 = up i.
 */
interface FamilyMeaning {
  E: number; k: number; I: number;
  router: string;
  routerBias?: string;
  selectionBias?: string;
  layout: 'std' | 'in_out' | 'in_out_interleaved';
  expertBiases?: boolean;
  shared?: {module: string, S: number, gate?: string, fusedInputLinear?: boolean};
  routing: Partial<RefMoeOptions> & Pick<RefMoeOptions, 'topkMethod' | 'renormalize'>;
}

function meaning(family: string, c: Config): FamilyMeaning {
  const softmax = (renormalize: boolean) => ({topkMethod: 'greedy' as const, renormalize});
  const sigmoid = (renormalize: boolean, rsf: number, eps?: number) => ({topkMethod: 'noaux_tc' as const,
    nGroup: 1, topkGroup: 1, renormalize, routedScalingFactor: rsf, renormalizeEpsilon: eps});
  const std = {layout: 'std' as const, router: 'gate.weight'};
  switch (family) {
    case 'qwen2_moe': case 'qwen3_next':
      return {...std, E: num(c, 'num_experts'), k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        shared: {module: 'shared_expert', S: num(c, 'shared_expert_intermediate_size'),
          gate: 'shared_expert_gate.weight'}, routing: softmax(bool(c, 'norm_topk_prob'))};
    case 'qwen3_moe':
      // config.json spells it num_local_experts (transformers' attribute is num_experts).
      return {...std, E: num(c, 'num_local_experts', c.num_experts as number), k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        routing: softmax(bool(c, 'norm_topk_prob'))};
    case 'olmoe': case 'flex_olmo':
      return {...std, E: num(c, 'num_experts'), k: num(c, 'num_experts_per_tok'), I: num(c, 'intermediate_size'),
        routing: softmax(bool(c, 'norm_topk_prob'))};
    case 'mixtral': case 'minimax':
      return {...std, E: num(c, 'num_local_experts'), k: num(c, 'num_experts_per_tok'), I: num(c, 'intermediate_size'),
        routing: softmax(true)};
    case 'jamba':
      return {...std, router: 'router.weight', E: num(c, 'num_experts'), k: num(c, 'num_experts_per_tok'),
        I: num(c, 'intermediate_size'), routing: softmax(false)};
    case 'granitemoe': case 'granitemoeshared': {
      const S = family === 'granitemoeshared' ? num(c, 'shared_intermediate_size', 0) : 0;
      return {...std, router: 'router.weight', E: num(c, 'num_local_experts'), k: num(c, 'num_experts_per_tok'),
        I: num(c, 'intermediate_size'), routing: softmax(true),
        shared: S > 0 ? {module: '../shared_mlp', S, fusedInputLinear: true} : undefined};
    }
    case 'hunyuan_v1_moe': {
      const first = (v: unknown) => (Array.isArray(v) ? v[0] : v) as number;
      return {...std, router: 'gate.wg.weight', E: first(c.num_experts), k: first(c.moe_topk),
        I: num(c, 'intermediate_size'), shared: {module: 'shared_mlp', S: num(c, 'intermediate_size')},
        routing: softmax(true)};
    }
    case 'phimoe':
      return {...std, router: 'router.weight', E: num(c, 'num_local_experts'), k: 2, I: num(c, 'intermediate_size'),
        routing: {topkMethod: 'sparsemixer', renormalize: false, sparsemixerEpsilon: num(c, 'router_jitter_noise')}};
    case 'deepseek_v2': {
      const grouped = c.topk_method === 'group_limited_greedy';
      return {...std, E: num(c, 'n_routed_experts'), k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        shared: {module: 'shared_experts', S: num(c, 'moe_intermediate_size') * num(c, 'n_shared_experts')},
        routing: {topkMethod: grouped ? 'group_limited_greedy' : 'greedy', renormalize: false,
          nGroup: grouped ? num(c, 'n_group') : 1, topkGroup: grouped ? num(c, 'topk_group') : 1,
          routedScalingFactor: num(c, 'routed_scaling_factor')}};
    }
    case 'deepseek_v3': case 'dots1': case 'glm4_moe':
      return {...std, selectionBias: 'gate.e_score_correction_bias', E: num(c, 'n_routed_experts'),
        k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        shared: {module: 'shared_experts', S: num(c, 'moe_intermediate_size') * num(c, 'n_shared_experts')},
        routing: {topkMethod: 'noaux_tc', nGroup: num(c, 'n_group'), topkGroup: num(c, 'topk_group'),
          renormalize: bool(c, 'norm_topk_prob'), routedScalingFactor: num(c, 'routed_scaling_factor')}};
    case 'ernie4_5_moe':
      // w / max(sum, moe_norm_min): the clamp (1e-12) is never reached by softmax weights.
      return {...std, selectionBias: 'gate.moe_statics.e_score_correction_bias', E: num(c, 'moe_num_experts'),
        k: num(c, 'moe_k'), I: num(c, 'moe_intermediate_size'),
        shared: {module: 'shared_experts', S: num(c, 'moe_intermediate_size') * num(c, 'moe_num_shared_experts')},
        routing: softmax(true)};
    case 'afmoe':
      return {...std, router: 'router.gate.weight', selectionBias: 'expert_bias', E: num(c, 'num_experts'),
        k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        shared: {module: 'shared_experts', S: num(c, 'moe_intermediate_size') * num(c, 'num_shared_experts')},
        routing: sigmoid(true, num(c, 'route_scale'), 1e-20)};
    case 'lfm2_moe':
      return {...std, selectionBias: bool(c, 'use_expert_bias') ? 'expert_bias' : undefined, E: num(c, 'num_experts'),
        k: num(c, 'num_experts_per_tok'), I: num(c, 'moe_intermediate_size'),
        routing: sigmoid(bool(c, 'norm_topk_prob'), num(c, 'routed_scaling_factor'), 1e-6)};
    case 'minimax_m2':
      return {...std, selectionBias: 'e_score_correction_bias', E: num(c, 'num_local_experts'),
        k: num(c, 'num_experts_per_tok'), I: num(c, 'intermediate_size'), routing: sigmoid(true, 1, 0)};
    case 'llama4_text':
      return {layout: 'in_out', router: 'router.weight', E: num(c, 'num_local_experts'),
        k: num(c, 'num_experts_per_tok'), I: num(c, 'intermediate_size'),
        shared: {module: 'shared_expert', S: num(c, 'intermediate_size')},
        routing: {...sigmoid(false, 1), routingWeightOn: 'input'}};
    case 'longcat_flash':
      return {...std, router: 'router.classifier.weight', selectionBias: 'router.e_score_correction_bias',
        E: num(c, 'n_routed_experts'), k: num(c, 'moe_topk'), I: num(c, 'expert_ffn_hidden_size'),
        routing: {...softmax(false), routedScalingFactor: num(c, 'routed_scaling_factor'),
          zeroExperts: num(c, 'zero_expert_num')}};
    case 'gpt_oss':
      return {layout: 'in_out_interleaved', router: 'router.weight', routerBias: 'router.bias', expertBiases: true,
        E: num(c, 'num_local_experts'), k: num(c, 'num_experts_per_tok'), I: num(c, 'intermediate_size'),
        routing: {...softmax(true), activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: 7}};
    default:
      throw new Error(`no reference meaning for family '${family}'`);
  }
}

/** The reference's weights and config for a fixture's block, from its in-memory (fused) tensors. */
export function referenceOf(f: HfFixture): {weights: RefMoeWeights, config: RefMoeOptions, H: number} {
  const c = textConfig(f.config);
  const m = meaning(f.family, c);
  const {E, I} = m;
  const H = num(c, 'hidden_size');
  const Z = m.routing.zeroExperts ?? 0;
  let tensors: Map<string, FixtureTensor>;
  if (f.fused_safetensors_b64 != null) {
    tensors = parseSafetensors(base64Bytes(f.fused_safetensors_b64));
  } else {
    // MXFP4 fixtures ship only the checkpoint layout: dequantize the experts, the rest has in-memory names.
    const hub = parseSafetensors(base64Bytes(f.hub_safetensors_b64));
    tensors = new Map([...hub].filter(([k]) => !/_(blocks|scales)$/.test(k)));
    for (const proj of ['gate_up_proj', 'down_proj']) {
      tensors.set(`${f.prefix}experts.${proj}`, dequantizeMxfp4(hub.get(`${f.hub_prefix}experts.${proj}_blocks`)!,
          hub.get(`${f.hub_prefix}experts.${proj}_scales`)!));
    }
  }
  const layerPrefix = f.prefix.slice(0, f.prefix.slice(0, -1).lastIndexOf('.') + 1);
  const get = (rel: string, shape: number[]): Float32Array | Uint8Array => {
    const name = rel.startsWith('../') ? layerPrefix + rel.slice(3) : f.prefix + rel;
    const t = tensors.get(name);
    if (t == null) throw new Error(`${f.name}: no tensor '${name}' (have ${[...tensors.keys()].join(', ')})`);
    if (t.shape.join() !== shape.join()) throw new Error(`${f.name}: '${name}' is [${t.shape}], expected [${shape}]`);
    return t.data;
  };
  // [rows, cols] -> [cols, rows]
  const transpose = (a: ArrayLike<number>, rows: number, cols: number, at = 0) =>
      Float64Array.from({length: rows * cols}, (_, n) => a[at + (n % rows) * cols + Math.floor(n / rows)]);

  const router = get(m.router, [E + Z, H]);
  const weights: RefMoeWeights = {gateWeight: transpose(router, E + Z, H), upGateProjWeight: [], downProjWeight: []};
  if (m.routerBias) weights.gateBias = get(m.routerBias, [E + Z]);
  if (m.selectionBias) {
    const t = tensors.get(f.prefix + m.selectionBias);
    weights.gateCorrectionBias = get(m.selectionBias, t?.shape.length === 2 ? [1, E + Z] : [E + Z]);
  }
  // The reference's layout: upGate [E, H, 2I] gate columns first, down [E, I, H].
  const upGate = new Float64Array(E * H * 2 * I), down = new Float64Array(E * I * H);
  if (m.layout === 'std') {
    // LongCat's gate_up_proj has E+Z rows; the last Z are never read.
    const gu = get('experts.gate_up_proj', [E + Z, 2 * I, H]), dn = get('experts.down_proj', [E, H, I]);
    for (let e = 0; e < E; e++) {
      upGate.set(transpose(gu, 2 * I, H, e * 2 * I * H), e * H * 2 * I);
      down.set(transpose(dn, H, I, e * H * I), e * I * H);
    }
  } else {
    const gu = get('experts.gate_up_proj', [E, H, 2 * I]);
    down.set(get('experts.down_proj', [E, I, H]));
    const interleaved = m.layout === 'in_out_interleaved';
    for (let r = 0; r < E * H; r++) {
      for (let i = 0; i < I; i++) {
        upGate[r * 2 * I + i] = gu[r * 2 * I + (interleaved ? 2 * i : i)];
        upGate[r * 2 * I + I + i] = gu[r * 2 * I + (interleaved ? 2 * i + 1 : I + i)];
      }
    }
    if (m.expertBiases) {
      const gb = get('experts.gate_up_proj_bias', [E, 2 * I]);
      weights.upGateProjBias = Float64Array.from({length: E * 2 * I}, (_, n) => {
        const e = Math.floor(n / (2 * I)), j = n % (2 * I);
        return gb[e * 2 * I + (j < I ? 2 * j : 2 * (j - I) + 1)];
      });
      weights.downProjBias = get('experts.down_proj_bias', [E, H]);
    }
  }
  weights.upGateProjWeight = upGate;
  weights.downProjWeight = down;

  const S = m.shared?.S ?? 0;
  if (m.shared && S > 0) {
    const s = m.shared;
    let gate: Float32Array | Uint8Array, up: Float32Array | Uint8Array, dn: Float32Array | Uint8Array;
    if (s.fusedInputLinear) {
      const il = get(`${s.module}.input_linear.weight`, [2 * S, H]);
      gate = il.subarray(0, S * H);
      up = il.subarray(S * H);
      dn = get(`${s.module}.output_linear.weight`, [H, S]);
    } else {
      gate = get(`${s.module}.gate_proj.weight`, [S, H]);
      up = get(`${s.module}.up_proj.weight`, [S, H]);
      dn = get(`${s.module}.down_proj.weight`, [H, S]);
    }
    const sg = new Float64Array(H * 2 * S);
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < S; j++) {
        sg[h * 2 * S + j] = gate[j * H + h];
        sg[h * 2 * S + S + j] = up[j * H + h];
      }
    }
    weights.sharedUpGateProjWeight = sg;
    weights.sharedDownProjWeight = transpose(dn, H, S);
    if (s.gate) weights.sharedExpertGateWeight = get(s.gate, [1, H]);
  }
  const config: RefMoeOptions = {numExperts: E, topK: m.k, intermediateSize: I, nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, useCorrectionBias: m.selectionBias != null, latentSize: null,
    withBias: m.expertBiases === true, probInAdvance: false, sharedExpertIntermediateSize: S,
    sharedExpertGate: m.shared?.gate != null && S > 0, routerBias: m.routerBias != null, ...m.routing};
  return {weights, config, H};
}
