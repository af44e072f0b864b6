/**
 * The whole-layer FusedMoE forward on webgpu where the decode path does not take the call (prefill): the layer's op
 * chain (router matMul, routing, permute, the two grouped GEMMs, combine, and whatever its options add) runs once
 * through tfjs with its programs recorded, and later calls of the same layer and T replay them, encoded directly
 * (encoded_forward.ts). Same pipelines (tfjs's cache of them), same uniforms, same dispatches, in the same order, so
 * the output is bit for bit the op chain's, without tfjs's ~58 us of host work per program (BENCHMARKS.md, session 6,
 * lowbit: 11 programs, 1.09 ms of enqueue per call at T = 256).
 *
 * - Recording: tfjs's recordAndSubmit is wrapped for the one call (the pipeline, the dispatch size, the output's and
 *   inputs' dataIds, and the uniform bytes it writes). Every input must be x, a weight, or an earlier program's
 *   output; anything else (a host constant, a copy, a cached weight range) and the layer and T are marked as not
 *   replayable: the op chain keeps running them.
 * - Intermediates become buffers of a workspace shared by every plan with the same buffer sizes (the layers of one
 *   model at one T): the queue runs forwards in order, so one set serves them all. Uniforms become the plan's own
 *   buffers, written once. Bind groups are built once; those holding x or the output per buffer pair.
 * - A plan is valid for the options object, the weights' dataIds, the device and the webgpu flags it was recorded
 *   under (the GEMM variant, half matrices and tfjs's matMul choice read flags); anything else rebuilds it. Each
 *   layer keeps plans for at most MAX_TOKEN_COUNTS token counts.
 * - Not taken: MOE_WEBGPU_PREFILL_REPLAY off, a gradient tape, tfjs's timers active (tf.time / tf.profile time the
 *   op chain's programs, the same ones), parallel compilation.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {DataId, Tensor2D, TensorInfo} from '@tensorflow/tfjs-core';

import type {FusedMoEOptions, FusedMoEWeights} from '../../../executor/layer_schema.js';
import {bufferOf, CallBindGroups, COPY_DST, COPY_SRC, encodeForward, EncodedPlan, EncodedPlans, EncodedProgram,
  GPUBufferLike, GPUDeviceLike, STORAGE, UNIFORM, weightTensors, WebGPUBackendInternals} from '../encoded_forward.js';
import {MOE_WEBGPU_PREFILL_REPLAY} from '../flags_webgpu.js';

/** Token counts a layer keeps plans for (the least recently used goes first). */
const MAX_TOKEN_COUNTS = 4;

interface Plan extends EncodedPlan {
  options: FusedMoEOptions;
  device: GPUDeviceLike;
  /** The values of the flags it was recorded under (flagValues). */
  flags: unknown[];
  /** Why the op chain cannot be replayed (null: it can); the op chain runs these calls. */
  declined: string | null;
}

const prefillPlans = new EncodedPlans<Plan>(MAX_TOKEN_COUNTS);

/** Programs replayed so far (specs count programs per forward with it). */
export function prefillDispatchCount(): number {
  return prefillPlans.dispatches;
}

/** How many per-layer plans (replayable or not) exist now (specs check that dispose frees them). */
export function prefillPlanCount(): number {
  return prefillPlans.count();
}

/** Frees what the prefill path keeps for a layer (its disposal calls this). */
export function releasePrefillState(owner: object): void {
  prefillPlans.release(owner);
}

/**
 * The flags that can change which programs the op chain runs, or how: every tfjs webgpu flag and ours but the ones
 * of the decode path and this switch (names listed again when a flag registers).
 */
const signatureFlags = {registered: -1, names: [] as string[]};

function env(): {flagRegistry: Record<string, unknown>, get(name: string): unknown} {
  return tf.env() as unknown as ReturnType<typeof env>;
}

function signatureNames(): string[] {
  const registered = Object.keys(env().flagRegistry);
  if (registered.length !== signatureFlags.registered) {
    signatureFlags.names = registered.filter(name =>
        (name.startsWith('WEBGPU_') || name.startsWith('MOE_WEBGPU_') || name === 'MOE_KERNEL_PATH') &&
        !name.startsWith('MOE_WEBGPU_DECODE_') && name !== MOE_WEBGPU_PREFILL_REPLAY);
    signatureFlags.registered = registered.length;
  }
  return signatureFlags.names;
}

/** Their values now, read through get() (getFlags() holds only the flags read so far). */
function flagValues(): unknown[] {
  const e = env();
  return signatureNames().map(name => e.get(name));
}

function sameFlags(values: unknown[]): boolean {
  const names = signatureNames(), e = env();
  if (names.length !== values.length) return false;
  for (let i = 0; i < names.length; i++) if (e.get(names[i]) !== values[i]) return false;
  return true;
}

interface Workspace {
  buffers: GPUBufferLike[];
  refs: number;
}
/** Intermediate buffers by device and by the list of their sizes. */
const workspaces = new WeakMap<GPUDeviceLike, Map<string, Workspace>>();

function acquireWorkspace(device: GPUDeviceLike, sizes: number[]): {buffers: GPUBufferLike[], release: () => void} {
  let byKey = workspaces.get(device);
  if (byKey == null) workspaces.set(device, byKey = new Map());
  const key = sizes.join(',');
  let ws = byKey.get(key);
  if (ws == null) {
    ws = {buffers: sizes.map(size => device.createBuffer({size, usage: STORAGE | COPY_SRC | COPY_DST})), refs: 0};
    byKey.set(key, ws);
  }
  ws.refs++;
  const held = ws;
  return {buffers: ws.buffers, release: () => {
    if (--held.refs > 0) return;
    for (const b of held.buffers) b.destroy();
    byKey!.delete(key);
  }};
}

/** One program as tfjs ran it. */
interface Recorded {
  name: string;
  pipeline: unknown;
  dispatch: [number, number, number];
  output: DataId;
  outputSize: number;
  inputs: DataId[];
  uniform: ArrayBuffer | null;
}

/** A tensor whose values tfjs uploaded from the host during the op chain (a constant of an op). */
interface Constant {
  bytes: ArrayBuffer;
  size: number;
}

interface TfjsProgram {
  pipeline: unknown;
  dispatch: [number, number, number];
}
type RecordAndSubmit = (program: TfjsProgram, output: TensorInfo, inputs: TensorInfo[], uniforms?: unknown) => void;

/** Runs opChain with tfjs's programs recorded; the output is the op chain's. */
function record(backend: WebGPUBackendInternals, opChain: () => Tensor2D):
    {output: Tensor2D, programs: Recorded[], constants: Map<DataId, Constant>} {
  const internals = backend as unknown as {recordAndSubmit: RecordAndSubmit, uploadToGPU(id: DataId): void};
  const submit = internals.recordAndSubmit;
  const upload = internals.uploadToGPU;
  const constants = new Map<DataId, Constant>();
  const queue = backend.queue;
  const programs: Recorded[] = [];
  let lastWrite: ArrayBuffer | null = null;
  // Only while recording: tfjs writes a program's uniforms with the queue's writeBuffer right before binding them.
  backend.queue = {
    submit: b => queue.submit(b),
    onSubmittedWorkDone: () => queue.onSubmittedWorkDone(),
    writeBuffer(buffer, offset, data, dataOffset = 0, size?) {
      if ((buffer.usage & UNIFORM) !== 0) {
        const bytes = ArrayBuffer.isView(data) ?
            new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
        lastWrite = bytes.slice(dataOffset, size == null ? undefined : dataOffset + size).buffer;
      }
      queue.writeBuffer(buffer, offset, data, dataOffset, size);
    },
  };
  internals.uploadToGPU = function(this: unknown, id: DataId) {
    const data = backend.tensorMap.get(id) as {resource: unknown, values?: ArrayLike<number> | null, dtype: string};
    const values = data?.resource == null ? data?.values : null;
    // As tfjs stores them: int32 and bool as int32, everything else as float32.
    const bytes = values == null ? null :
        (data.dtype === 'int32' || data.dtype === 'bool' ? Int32Array.from(values) : Float32Array.from(values)).buffer;
    upload.call(this, id);
    if (bytes != null) constants.set(id, {bytes, size: backend.tensorMap.get(id)!.resource.size});
  };
  internals.recordAndSubmit = function(this: unknown, program, output, inputs, uniforms) {
    lastWrite = null;
    submit.call(this, program, output, inputs, uniforms);
    programs.push({name: (program as object).constructor.name, pipeline: program.pipeline,
      dispatch: [...program.dispatch] as [number, number, number], output: output.dataId,
      outputSize: backend.tensorMap.get(output.dataId)!.resource.size, inputs: inputs.map(t => t.dataId),
      uniform: lastWrite});
  };
  try {
    return {output: tf.tidy(opChain), programs, constants};
  } finally {
    internals.recordAndSubmit = submit;
    internals.uploadToGPU = upload;
    backend.queue = queue;
  }
}

type Role = {kind: 'x'} | {kind: 'output'} | {kind: 'weight', buffer: GPUBufferLike} |
    {kind: 'intermediate', index: number} | {kind: 'constant', id: DataId};

/** The plan replaying `programs`, or the reason they cannot be replayed. */
function buildPlan(backend: WebGPUBackendInternals, x: Tensor2D, output: Tensor2D, weights: TensorInfo[],
                   programs: Recorded[], constants: Map<DataId, Constant>): {plan: Omit<Plan, 'options' | 'device' | 'flags' | 'declined'>} |
                                          {reason: string} {
  const device = backend.device;
  const [T, H] = x.shape;
  if (programs.length === 0) return {reason: 'no programs ran'};
  if (output.dtype !== 'float32' || output.shape[0] !== T || output.shape[1] !== H) {
    return {reason: `an output of shape [${output.shape}] ${output.dtype}`};
  }
  const weightBuffers = new Map<DataId, GPUBufferLike>(weights.map(t => [t.dataId, bufferOf(backend, t)]));
  const intermediates = new Map<DataId, number>();
  const sizes: number[] = [];
  const roleOf = (id: DataId): Role | null => {
    if (id === output.dataId) return {kind: 'output'};
    const index = intermediates.get(id);
    if (index != null) return {kind: 'intermediate', index};
    if (id === x.dataId) return {kind: 'x'};
    const buffer = weightBuffers.get(id);
    if (buffer != null) return {kind: 'weight', buffer};
    return constants.has(id) ? {kind: 'constant', id} : null;
  };
  const roles: Role[][] = [];
  for (const p of programs) {
    const inputs: Role[] = [];
    for (const id of p.inputs) {
      const role = roleOf(id);
      if (role == null) return {reason: `${p.name} reads a tensor made outside the op chain's programs`};
      inputs.push(role);
    }
    if (p.uniform == null) return {reason: `${p.name} wrote no uniforms`};
    if (p.output === x.dataId || weightBuffers.has(p.output)) return {reason: `${p.name} writes its input`};
    if (p.output !== output.dataId && !intermediates.has(p.output)) {
      intermediates.set(p.output, sizes.length);
      sizes.push(p.outputSize);
    }
    roles.push([roleOf(p.output)!, ...inputs]);
  }
  if (!programs.some(p => p.output === output.dataId)) return {reason: 'the output is not a program\'s'};
  const workspace = acquireWorkspace(device, sizes);
  const owned: GPUBufferLike[] = [];
  // A constant's values in the plan's own buffer, written once.
  const constantBuffers = new Map<DataId, GPUBufferLike>();
  const constantBuffer = (id: DataId): GPUBufferLike => {
    let b = constantBuffers.get(id);
    if (b == null) {
      const c = constants.get(id)!;
      b = device.createBuffer({size: c.size, usage: STORAGE | COPY_SRC | COPY_DST});
      device.queue.writeBuffer(b, 0, c.bytes);
      owned.push(b);
      constantBuffers.set(id, b);
    }
    return b;
  };
  const encoded: EncodedProgram[] = programs.map((p, i) => {
    const uniform = device.createBuffer({size: p.uniform!.byteLength, usage: UNIFORM | COPY_DST});
    device.queue.writeBuffer(uniform, 0, p.uniform!);
    owned.push(uniform);
    const layout = (p.pipeline as {getBindGroupLayout(i: number): unknown}).getBindGroupLayout(0);
    const resource = (r: Role, x: GPUBufferLike, out: GPUBufferLike) => ({buffer: r.kind === 'x' ? x :
        r.kind === 'output' ? out : r.kind === 'weight' ? r.buffer : r.kind === 'constant' ? constantBuffer(r.id) :
        workspace.buffers[r.index]});
    // tfjs's binding order: the output, the inputs, the uniforms.
    const entries = (x: GPUBufferLike, out: GPUBufferLike) => [...roles[i].map((r, b) =>
        ({binding: b, resource: resource(r, x, out)})), {binding: roles[i].length, resource: {buffer: uniform}}];
    const perCall = roles[i].some(r => r.kind === 'x' || r.kind === 'output');
    const group = perCall ? new CallBindGroups(device, layout, entries) :
        device.createBindGroup({layout, entries: entries(null, null)});
    return {name: p.name, pipeline: p.pipeline, groups: [group], workgroups: p.dispatch};
  });
  return {plan: {T, outShape: [T, H], programs: encoded, weightIds: weights.map(t => t.dataId), owned,
    onDestroy: workspace.release}};
}

function planServes(plan: Plan, w: FusedMoEWeights, o: FusedMoEOptions, device: GPUDeviceLike): boolean {
  if (plan.options !== o || plan.device !== device || !sameFlags(plan.flags)) return false;
  const weights = weightTensors(w);
  if (weights.length !== plan.weightIds.length) return false;
  for (let i = 0; i < weights.length; i++) if (weights[i].dataId !== plan.weightIds[i]) return false;
  return true;
}

/** Whether the prefill path may run now (beyond encodedForwardActive): its flag, no tfjs timers, no async compile. */
function prefillActive(backend: WebGPUBackendInternals): boolean {
  const env = tf.env();
  return env.getBool(MOE_WEBGPU_PREFILL_REPLAY) && backend.activeTimers == null &&
      !env.getBool('WEBGPU_ENGINE_COMPILE_ONLY');
}

/**
 * y [T,H] for x [T,H]: the op chain's programs replayed, or, on a layer's first call at this T (and wherever they
 * cannot be replayed), opChain itself; null where the path does not run now (then nothing was done). `owner` keys
 * the per-layer plan. The result is a new tensor tracked by the caller's tidy scope.
 */
export function webgpuPrefillForward(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions, owner: object,
                                     opChain: () => Tensor2D): Tensor2D | null {
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  if (!prefillActive(backend)) return null;
  const T = x.shape[0];
  const cached = prefillPlans.get(owner, T);
  if (cached != null && planServes(cached, w, o, backend.device)) {
    prefillPlans.touch(owner, T);
    return cached.declined != null ? null : encodeForward(backend, cached, x, prefillPlans);
  }
  const {output, programs, constants} = record(backend, opChain);
  const built = buildPlan(backend, x, output, weightTensors(w), programs, constants);
  const common = {options: o, device: backend.device, flags: flagValues()};
  prefillPlans.set(owner, T, 'reason' in built ?
      {T, outShape: [T, x.shape[1]], programs: [], weightIds: weightTensors(w).map(t => t.dataId), owned: [],
       ...common, declined: built.reason} :
      {...built.plan, ...common, declined: null});
  return output;
}

/** Why the last recording of this layer at T is not replayed (null: it is, or there is none). For specs. */
export function prefillDeclinedReason(owner: object, T: number): string | null {
  return prefillPlans.get(owner, T)?.declined ?? null;
}
