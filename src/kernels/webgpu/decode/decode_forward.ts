/**
 * The whole-layer FusedMoE forward for decode on webgpu: four programs (decode_programs.ts; three when the tiles
 * fold routing into upGate) encoded directly on the tfjs backend's device and command encoder (encoded_forward.ts),
 * so a forward costs four dispatches and a handful of JavaScript calls instead of a dozen tfjs ops.
 *
 * - Per layer (the calling layer, `owner`) and T, a plan keeps the intermediate buffers (`work`, `route`, `act`),
 *   the bind groups of the weights and the {x, output} bind groups (group 1) by buffer. A plan is rebuilt when a
 *   weight's data changes (a variable write gives it a new dataId), the options object or the tiles change; a call
 *   its plan serves skips every check (they ran when it was built). A pipeline's key is its WGSL (and binding
 *   kinds): every layer and launch shape (decode_tuning.ts) producing the same code shares it; no uniforms.
 * - Packed expert weights (docs/formats.md) are read as they are stored: the up/down programs decode the codes in
 *   their loads (decode_programs.ts), no dequantized copy exists.
 * - The path runs where it is correct and measured to be faster: webgpu active, our kernels not bypassed, no
 *   gradient tape, T <= the decode limit (setWebGPUDecodeMaxTokens), and the options and shapes listed in
 *   decodeUnsupportedReason; anything else returns null and the caller runs the op chain.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {DataId, Tensor, Tensor2D, TensorInfo} from '@tensorflow/tfjs-core';

import {bitsPerCode, ExpertWeightLayout, isQuantizedExpertWeights, QuantizedExpertWeights} from
    '../../../executor/expert_weights.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../../../executor/layer_schema.js';
import {maxStorageBindingBytes} from '../expert_ranges.js';
import {recordedAdapterInfo} from '../half_matrices.js';
import {bufferOf, CallBindGroups, encodeForward, EncodedPlan, EncodedPlans, EncodedProgram, GPUBufferLike,
  GPUDeviceLike, GPULayoutLike, GPUPipelineLike, STORAGE, COPY_SRC, COPY_DST, WebGPUBackendInternals} from
    '../encoded_forward.js';
import {MOE_WEBGPU_DECODE_MAX_TOKENS} from '../flags_webgpu.js';
import {combineBindings, combineCode, combineDispatch, DecodeShape, DecodeTiles, decodeLayout, downBindings, downCode,
  downDispatch, downExpertBindings, downExpertCode, downRunsByExpert, foldedSharedBytes,
  gemmSharedBytes, routeCode,
  routerDispatch, routerLogitsCode, routeSharedBytes, upGateBindings, upGateCode, upGateDispatch}
  from './decode_programs.js';
import {tunedDecodeTiles} from './decode_tuning.js';

/** The most tokens the programs are written for (the crossover itself is the MOE_WEBGPU_DECODE_MAX_TOKENS flag). */
export const DECODE_TOKEN_CAP = 32;
/** Launch shapes a benchmark forces (the optional fields absent: the tuned ones). */
export type DecodeTilesOverride = Pick<DecodeTiles, 'upNv' | 'upKs' | 'downNv' | 'downKs'> & Partial<DecodeTiles>;
let tilesOverride: DecodeTilesOverride | null = null;

/** Sets the MOE_WEBGPU_DECODE_MAX_TOKENS flag: the largest T that takes the decode path (0 turns it off). */
export function setWebGPUDecodeMaxTokens(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > DECODE_TOKEN_CAP) {
    throw new Error(`setWebGPUDecodeMaxTokens: argument 'n' must be an integer in [0, ${DECODE_TOKEN_CAP}], got ${n}`);
  }
  tf.env().set(MOE_WEBGPU_DECODE_MAX_TOKENS, n);
}

/** The largest token count that takes the decode path now (the flag, clamped to [0, DECODE_TOKEN_CAP]). */
export function webgpuDecodeMaxTokens(): number {
  return Math.max(0, Math.min(DECODE_TOKEN_CAP, Math.floor(tf.env().getNumber(MOE_WEBGPU_DECODE_MAX_TOKENS))));
}

/** Forces the launch shapes (benchmarks compare them); null restores the default choice. */
export function setWebGPUDecodeTiles(tiles: DecodeTilesOverride | null): void {
  if (tiles != null) {
    const p = tiles.routerPartials;
    if (p != null && !(Number.isInteger(p) && p >= 1)) {
      throw new Error(`setWebGPUDecodeTiles: routerPartials must be a positive integer, got ${p}`);
    }
    for (const key of ['upRows', 'downRows'] as const) {
      const r = tiles[key];
      if (r != null && !(Number.isInteger(r) && r >= 1 && r <= DECODE_TOKEN_CAP)) {
        throw new Error(`setWebGPUDecodeTiles: ${key} must be an integer in [1, ${DECODE_TOKEN_CAP}], got ${r}`);
      }
    }
    if (tiles.routeLoads != null && tiles.routeLoads !== 'loop' && tiles.routeLoads !== 'spread') {
      throw new Error(`setWebGPUDecodeTiles: routeLoads must be 'loop' or 'spread', got ${JSON.stringify(tiles.routeLoads)}`);
    }
    const ru = tiles.routerUnroll;
    if (ru != null && !(Number.isInteger(ru) && ru >= 1 && ru <= 16)) {
      throw new Error(`setWebGPUDecodeTiles: routerUnroll must be an integer in [1, 16], got ${ru}`);
    }
    const rr = tiles.routerReduceRows;
    if (rr != null && !(Number.isInteger(rr) && rr >= 1 && rr <= 16)) {
      throw new Error(`setWebGPUDecodeTiles: routerReduceRows must be an integer in [1, 16], got ${rr}`);
    }
    const tgs = tiles.routerTokenGroups;
    if (tgs != null && !(Number.isInteger(tgs) && tgs >= 1 && tgs <= DECODE_TOKEN_CAP)) {
      throw new Error(`setWebGPUDecodeTiles: routerTokenGroups must be an integer in [1, ${DECODE_TOKEN_CAP}], got ${tgs}`);
    }
    const rt = tiles.routeThreads;
    if (rt != null && !(Number.isInteger(Math.log2(rt)) && rt >= 1 && rt <= 256)) {
      throw new Error(`setWebGPUDecodeTiles: routeThreads must be a power of two in [1, 256], got ${rt}`);
    }
    const lanes = tiles.routeLanes;
    if (lanes != null && !(Number.isInteger(Math.log2(lanes)) && lanes >= 1 && lanes <= 256)) {
      throw new Error(`setWebGPUDecodeTiles: routeLanes must be a power of two in [1, 256], got ${lanes}`);
    }
    for (const key of ['fold', 'downFlat', 'exponentBits', 'decodeOnce', 'routerVec4', 'e2m1Half', 'int4Half',
                       'downByExpert', 'routeSubgroups', 'upPrefetch', 'downPrefetch', 'unchecked', 'upStageX',
                       'upInfoAtOnce', 'downTileMajor', 'upRowCases', 'upRowLoops', 'routerStageX'] as const) {
      if (tiles[key] != null && typeof tiles[key] !== 'boolean') {
        throw new Error(`setWebGPUDecodeTiles: ${key} must be a boolean, got ${JSON.stringify(tiles[key])}`);
      }
    }
    for (const key of ['downUnroll', 'upUnroll'] as const) {
      const u = tiles[key];
      if (u != null && !(u === 1 || u === 2 || u === 4)) {
        throw new Error(`setWebGPUDecodeTiles: ${key} must be 1, 2 or 4, got ${u}`);
      }
    }
    if (tiles.routeTopk != null && !['rounds', 'keys', 'rank'].includes(tiles.routeTopk)) {
      throw new Error(`setWebGPUDecodeTiles: routeTopk must be 'rounds', 'keys' or 'rank', got ${JSON.stringify(tiles.routeTopk)}`);
    }
    if (tiles.int4Unit != null && tiles.int4Unit !== 'half' && tiles.int4Unit !== 'bits') {
      throw new Error(`setWebGPUDecodeTiles: int4Unit must be 'half' or 'bits', got ${JSON.stringify(tiles.int4Unit)}`);
    }
    if (tiles.routePlace != null && tiles.routePlace !== 'loop' && tiles.routePlace !== 'mask') {
      throw new Error(`setWebGPUDecodeTiles: routePlace must be 'loop' or 'mask', got ${JSON.stringify(tiles.routePlace)}`);
    }
    for (const [nv, ks, who] of [[tiles.upNv, tiles.upKs, 'up'], [tiles.downNv, tiles.downKs, 'down']] as const) {
      const pairs = who === 'up' ? 2 : 1;  // up tiles hold gate and up columns in pairs
      if (!(nv * ks === 256 && Number.isInteger(Math.log2(ks)) && nv >= pairs && nv % pairs === 0)) {
        throw new Error(`setWebGPUDecodeTiles: ${who}Nv * ${who}Ks must be 256 with ${who}Ks a power of two, got ` +
            `${nv} x ${ks}`);
      }
    }
  }
  tilesOverride = tiles;
}

/** The launch shapes of a call: the benchmark's override, else the tuned table (decode_tuning.ts). */
export function chooseDecodeTiles(s: Pick<DecodeShape, 'T' | 'H' | 'I' | 'E' | 'K'> &
                                  Partial<Pick<DecodeShape, 'upPacked'>>): DecodeTiles {
  const bits = s.upPacked == null ? 32 : bitsPerCode(s.upPacked.format);
  const tuned = tunedDecodeTiles({T: s.T, H: s.H, I: s.I, E: s.E, K: s.K, bits});
  return tilesOverride == null ? tuned : {...tuned, ...tilesOverride};
}

/** The value an absent optional tile field stands for (DecodeTiles' docs). */
const TILE_DEFAULTS: {readonly [k in keyof DecodeTiles]?: unknown} = {fold: false, downFlat: false, downUnroll: 1,
  upUnroll: 1, routeThreads: 256, exponentBits: false, routeLoads: 'loop', routerUnroll: 1, decodeOnce: false,
  routerVec4: false, e2m1Half: false, int4Half: false, downByExpert: false, downRows: 4, routeSubgroups: false,
  routePlace: 'loop', int4Unit: undefined, upPrefetch: false, downPrefetch: false, unchecked: false, upStageX: false,
  routerReduceRows: 1, upInfoAtOnce: false, downTileMajor: false, upRowCases: false,
  upRowLoops: false, routerTokenGroups: 1, routerStageX: false};

function sameTiles(a: DecodeTiles, b: DecodeTiles): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as Array<keyof DecodeTiles>);
  for (const k of keys) {
    if ((a[k] ?? TILE_DEFAULTS[k]) !== (b[k] ?? TILE_DEFAULTS[k])) return false;
  }
  return true;
}

/**
 * Whether the folded variant (three programs) runs for this shape: asked for by the tiles and within the device's
 * workgroup memory and storage bindings (else the four programs run; they cover every supported option).
 */
export function decodeFolds(s: DecodeShape, t: DecodeTiles, limits: GPUDeviceLike['limits']): boolean {
  return t.fold === true && foldedSharedBytes(s, t) <= limits.maxComputeWorkgroupStorageSize &&
      // group(1)'s layout (x, output) counts for every program of the path.
      upGateBindings(s, true).length + 2 <= limits.maxStorageBuffersPerShaderStage;
}

/** Why this call cannot take the decode path (null: it can). Cheap: runs on every forward. */
export function decodeUnsupportedReason(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): string | null {
  const [T, H] = x.shape;
  const maxTokens = webgpuDecodeMaxTokens();
  if (T < 1 || T > maxTokens) return `T = ${T} outside [1, ${maxTokens}]`;
  if (o.latentSize != null) return 'latent projections (the op chain runs them)';
  for (const name of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
    const v = w[name];
    if (isQuantizedExpertWeights(v) && v.transposed) return `${name} in the [E,N,K] layout (the op chain runs it)`;
  }
  // The routing options of docs/semantics.md section 11 run on the op chain (the decode route program has none).
  if (o.topkMethod === 'group_limited_greedy') return 'group_limited_greedy routing (the op chain runs it)';
  if (o.topkMethod === 'sparsemixer') return 'sparsemixer routing (the op chain runs it)';
  if (o.topkMethod !== 'noaux_tc' && o.routedScalingFactor !== 1) return 'routedScalingFactor on softmax routing';
  if (o.renormalizeEpsilon !== null) return 'renormalizeEpsilon';
  if (o.zeroExperts > 0) return 'zero experts';
  if (o.routerBias) return 'a router bias';
  if (o.activation !== 'swiglu') return `activation '${o.activation}'`;
  if (o.routingWeightOn === 'input') return 'routingWeightOn \'input\'';
  if (o.numExperts > 1024) return 'more than 1024 experts';
  const I = o.moeIntermediateSize, S = o.sharedExpertIntermediateSize;
  if (H % 4 !== 0 || I % 4 !== 0 || S % 4 !== 0) return 'H, I or the shared width not a multiple of 4';
  if (T * o.topK >= 65536) return 'too many rows';
  const device = (tf.backend() as unknown as WebGPUBackendInternals).device;
  const limit = maxStorageBindingBytes();
  for (const [name, part] of WEIGHT_PARTS) {
    const t = weightPart(w, name, part) as Tensor | undefined;
    if (t != null && t.size * 4 > limit) return `${name}${part === 'tensor' || part === 'values' ? '' : ` ${part}`} exceeds one storage binding`;
  }
  const shape = decodeShape(T, H, o, w, device);
  const storage = device.limits.maxComputeWorkgroupStorageSize;
  if (routeSharedBytes(shape) > storage || gemmSharedBytes(shape, chooseDecodeTiles(shape)) > storage) {
    return 'more workgroup storage than the device has';
  }
  // group(1) (x, output) counts for every program.
  const bindings = Math.max(upGateBindings(shape).length, downBindings(shape).length) + 2;
  const maxBindings = device.limits.maxStorageBuffersPerShaderStage;
  if (bindings > maxBindings) return `${bindings} storage bindings in one program (the device allows ${maxBindings})`;
  return null;
}

/** The packed layout of a routed weight ([E,K,N]), or null for float32 weights. */
function packedLayout(v: FusedMoEWeights['up_gate_proj_weight']): ExpertWeightLayout | null {
  if (!isQuantizedExpertWeights(v) || v.format === 'float32') return null;
  const [numExperts, depth, width] = v.shape;
  return {format: v.format, numExperts, depth, width, transposed: false, groupSize: v.groupSize,
    zeroPoint: v.zeroPoint};
}

/**
 * The device's smallest subgroup size where it has the `subgroups` feature, else 0 (tfjs's own device is created
 * without it; initWebGPUForNode's `features` adds it).
 */
function subgroupSizeOf(device: GPUDeviceLike): number {
  if (device.features?.has('subgroups') !== true) return 0;
  const size = device.adapterInfo?.subgroupMinSize ?? recordedAdapterInfo(device)?.subgroupMinSize ?? 0;
  return Number.isInteger(size) && size >= 1 ? size : 0;
}

function decodeShape(T: number, H: number, o: FusedMoEOptions, w: FusedMoEWeights, device: GPUDeviceLike):
    DecodeShape {
  return {T, H, subgroupSize: subgroupSizeOf(device), E: o.numExperts, K: o.topK, I: o.moeIntermediateSize, S: o.sharedExpertIntermediateSize,
    sharedGate: o.sharedExpertGate, method: o.topkMethod === 'noaux_tc' ? 'grouped' : 'softmax',
    hasCorrectionBias: o.useCorrectionBias, renormalize: o.renormalize, nGroup: o.nGroup, topkGroup: o.topkGroup,
    routedScalingFactor: o.routedScalingFactor, withBias: o.withBias, probInAdvance: o.probInAdvance,
    upPacked: packedLayout(w.up_gate_proj_weight), downPacked: packedLayout(w.down_proj_weight)};
}

type BindingKind = 'read' | 'rw';
interface CachedPipeline {
  pipeline: GPUPipelineLike;
  layout0: GPULayoutLike;
}
interface DeviceCache {
  pipelines: Map<string, CachedPipeline>;
  /** group(1): x (read-only), output (read-write); shared by all four programs. */
  callLayout: GPULayoutLike;
}
const deviceCaches = new WeakMap<GPUDeviceLike, DeviceCache>();

function deviceCache(device: GPUDeviceLike): DeviceCache {
  let c = deviceCaches.get(device);
  if (c == null) {
    const callLayout = device.createBindGroupLayout({entries: [
      {binding: 0, visibility: 4, buffer: {type: 'read-only-storage'}},
      {binding: 1, visibility: 4, buffer: {type: 'storage'}},
    ]});
    c = {pipelines: new Map(), callLayout};
    deviceCaches.set(device, c);
  }
  return c;
}

function pipelineFor(device: GPUDeviceLike, key: string, code: () => string, kinds: BindingKind[]): CachedPipeline {
  const cache = deviceCache(device);
  let p = cache.pipelines.get(key);
  if (p == null) {
    const layout0 = device.createBindGroupLayout({entries: kinds.map((k, i) => (
      {binding: i, visibility: 4, buffer: {type: k === 'read' ? 'read-only-storage' : 'storage'}}))});
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({bindGroupLayouts: [layout0, cache.callLayout]}),
      compute: {module: device.createShaderModule({code: code()}), entryPoint: 'main'},
    });
    p = {pipeline, layout0};
    cache.pipelines.set(key, p);
  }
  return p;
}

interface Plan extends EncodedPlan {
  H: number;
  tiles: DecodeTiles;
  /** What the plan was checked and built for: a call with the same ones skips the checks (the fast path). */
  options: FusedMoEOptions;
  override: DecodeTilesOverride | null;
  device: GPUDeviceLike;
  /** maxStorageBindingBytes() when built (a flag specs lower to force the sharded op chain). */
  bindingLimit: number;
}

type WeightName = 'gate_weight' | 'gate_correction_bias' | 'up_gate_proj_weight' | 'up_gate_proj_bias' |
    'down_proj_weight' | 'down_proj_bias' | 'shared_up_gate_proj_weight' | 'shared_down_proj_weight' |
    'shared_expert_gate_weight';
/** A weight's tensor, or a part of the routed weights (values: the float tensor, or the packed codes). */
type WeightPart = 'tensor' | keyof Pick<QuantizedExpertWeights, 'values' | 'scales' | 'zeroPoints'>;
const WEIGHT_PARTS: ReadonlyArray<readonly [WeightName, WeightPart]> = [['gate_weight', 'tensor'],
  ['gate_correction_bias', 'tensor'], ['up_gate_proj_weight', 'values'], ['up_gate_proj_weight', 'scales'],
  ['up_gate_proj_weight', 'zeroPoints'], ['up_gate_proj_bias', 'tensor'], ['down_proj_weight', 'values'],
  ['down_proj_weight', 'scales'], ['down_proj_weight', 'zeroPoints'], ['down_proj_bias', 'tensor'],
  ['shared_up_gate_proj_weight', 'tensor'], ['shared_down_proj_weight', 'tensor'],
  ['shared_expert_gate_weight', 'tensor']];

function weightPart(w: FusedMoEWeights, name: WeightName, part: WeightPart): TensorInfo | undefined {
  const v = w[name] as unknown;
  if (v == null) return undefined;
  if (isQuantizedExpertWeights(v)) return part === 'tensor' ? undefined : v[part];
  return part === 'tensor' || part === 'values' ? v as TensorInfo : undefined;
}

const decodePlans = new EncodedPlans<Plan>();

/** How many per-layer plans hold GPU buffers now (specs check that dispose frees them). */
export function decodePlanCount(): number {
  return decodePlans.count();
}

/** Frees what the decode path keeps for a layer (its disposal calls this). */
export function releaseDecodeState(owner: object): void {
  decodePlans.release(owner);
}

function buildPlan(backend: WebGPUBackendInternals, s: DecodeShape, o: FusedMoEOptions,
                   buffers: Array<GPUBufferLike | null>, ids: Array<DataId | null>): Plan {
  const device = backend.device;
  const tiles = chooseDecodeTiles(s);
  const l = decodeLayout(s, tiles);
  const make = (elements: number) =>
      device.createBuffer({size: Math.max(16, elements * 4), usage: STORAGE | COPY_SRC | COPY_DST});
  const byExpert = downRunsByExpert(s, tiles);
  const work = make(l.workSize), route = make(l.routeSize), act = make(l.actSize * 4);
  // The expert-major down program's rows [T * K, H] (its combine program sums each token's).
  const part = byExpert ? make(s.T * s.K * s.H) : null;
  const wb = (name: WeightName, part: WeightPart = 'tensor') =>
    buffers[WEIGHT_PARTS.findIndex(([n, p]) => n === name && p === part)];
  const named: Record<string, GPUBufferLike> = {work, route, act, ...(part == null ? {} : {part}), gate: wb('gate_weight'),
    cbias: wb('gate_correction_bias'), upGate: wb('up_gate_proj_weight', 'values'),
    upPacked: wb('up_gate_proj_weight', 'values'), upScales: wb('up_gate_proj_weight', 'scales'),
    upZeros: wb('up_gate_proj_weight', 'zeroPoints'), upBias: wb('up_gate_proj_bias'),
    down: wb('down_proj_weight', 'values'), downPacked: wb('down_proj_weight', 'values'),
    downScales: wb('down_proj_weight', 'scales'), downZeros: wb('down_proj_weight', 'zeroPoints'),
    downBias: wb('down_proj_bias'), sharedUpGate: wb('shared_up_gate_proj_weight'),
    sharedDown: wb('shared_down_proj_weight'), sgate: wb('shared_expert_gate_weight')};
  const rw = new Set(['work', 'route', 'act', 'part']);
  const cache = deviceCache(device);
  const size = s.T * s.H * 4;
  // group(1): x and the output, the same for every program of the forward.
  const callGroup = new CallBindGroups(device, cache.callLayout, (x, output) => [
    {binding: 0, resource: {buffer: x, size}}, {binding: 1, resource: {buffer: output, size}}]);
  const program = (name: string, code: () => string, bindings: string[], workgroups: number): EncodedProgram => {
    const kinds = bindings.map(b => rw.has(b) ? 'rw' : 'read') as BindingKind[];
    // Keyed by the WGSL itself: launch shapes that leave a program's code unchanged share its pipeline.
    const wgsl = code();
    const p = pipelineFor(device, `${kinds.join(',')}|${wgsl}`, () => wgsl, kinds);
    const bindGroup = device.createBindGroup({layout: p.layout0,
      entries: bindings.map((b, i) => ({binding: i, resource: {buffer: named[b]}}))});
    return {name, pipeline: p.pipeline, groups: [bindGroup, callGroup], workgroups: [workgroups, 1, 1]};
  };
  const fold = decodeFolds(s, tiles, device.limits);
  const programs = [
    program('routerLogits', () => routerLogitsCode(s, tiles), ['gate', 'work', ...(s.sharedGate ? ['sgate'] : [])],
            routerDispatch(s, tiles)),
    ...(fold ? [program('upGateRouted', () => upGateCode(s, tiles, true), upGateBindings(s, true),
                        upGateDispatch(s, tiles))] :
        [program('route', () => routeCode(s, tiles), ['work', 'route', ...(s.hasCorrectionBias ? ['cbias'] : [])], 1),
         program('upGate', () => upGateCode(s, tiles), upGateBindings(s), upGateDispatch(s, tiles))]),
    ...(byExpert ? [program('downExpert', () => downExpertCode(s, tiles), downExpertBindings(s), downDispatch(s, tiles)),
                    program('combine', () => combineCode(s, tiles), combineBindings(s), combineDispatch(s))] :
        [program('down', () => downCode(s, tiles), downBindings(s), downDispatch(s, tiles))]),
  ];
  const maxWg = device.limits.maxComputeWorkgroupsPerDimension;
  for (const p of programs) {
    const n = p.workgroups[0];
    if (n > maxWg) throw new Error(`webgpu decode: ${p.name} needs ${n} workgroups (> ${maxWg})`);
  }
  return {T: s.T, H: s.H, outShape: [s.T, s.H], tiles, options: o, override: tilesOverride, device,
    bindingLimit: maxStorageBindingBytes(), programs, weightIds: ids,
    owned: [work, route, act, ...(part == null ? [] : [part])]};
}

/** Programs this path has dispatched so far (specs count programs per forward with it). */
export function decodeDispatchCount(): number {
  return decodePlans.dispatches;
}

/** Whether a plan built earlier serves this call as is (same options object, tiles, device and weight data). */
function planServes(plan: Plan | undefined, H: number, w: FusedMoEWeights, o: FusedMoEOptions,
                    device: GPUDeviceLike): plan is Plan {
  if (plan == null || plan.options !== o || plan.H !== H || plan.override !== tilesOverride || plan.device !== device ||
      plan.bindingLimit !== maxStorageBindingBytes()) {
    return false;
  }
  for (let i = 0; i < WEIGHT_PARTS.length; i++) {
    const [name, part] = WEIGHT_PARTS[i];
    if ((weightPart(w, name, part)?.dataId ?? null) !== plan.weightIds[i]) return false;
  }
  return true;
}

/** The plan for this call, rebuilt when a weight, the options or the tiles changed; null: not on this path. */
function planFor(backend: WebGPUBackendInternals, x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions,
                 owner: object): Plan | null {
  const [T, H] = x.shape;
  const cached = decodePlans.get(owner, T);
  // The checks ran when the plan was built, for these very options and weights; only the T limit can change.
  if (planServes(cached, H, w, o, backend.device)) return T <= webgpuDecodeMaxTokens() ? cached : null;
  if (decodeUnsupportedReason(x, w, o) != null) return null;
  const weights = WEIGHT_PARTS.map(([name, part]) => weightPart(w, name, part));
  const buffers = weights.map(t => t == null ? null : bufferOf(backend, t));
  decodePlans.delete(owner, T);
  const plan = buildPlan(backend, decodeShape(T, H, o, w, backend.device), o, buffers, weights.map(t => t?.dataId ?? null));
  decodePlans.set(owner, T, plan);
  return plan;
}

/**
 * y [T,H] for x [T,H] through the decode programs, or null when this call cannot take the path (then nothing was
 * done). `owner` keys the per-layer plan. The result is a new tensor tracked by the caller's tidy scope.
 */
export function webgpuDecodeForward(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions, owner: object):
    Tensor2D | null {
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  const plan = planFor(backend, x, w, o, owner);
  if (plan == null) return null;
  return encodeForward(backend, plan, x, decodePlans);
}
