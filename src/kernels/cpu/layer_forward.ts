/**
 * The whole-layer FusedMoE forward of the cpu backend: the op chain's steps (router logits, routing, permute, up
 * projection + SwiGLU, down projection, combine) run back to back on host arrays, calling the very functions the
 * cpu kernels call (the WebAssembly SIMD GEMMs, else their JavaScript fallbacks; the routing, permute and combine
 * impls), so the result is bitwise the op chain's. What it saves is the engine work between them: about ten
 * tensors made, registered and freed per forward, which at decode (T = 1, a few milliseconds of GEMMs) was a
 * visible share of the time.
 *
 * It takes a call when a host backend is active ('cpu', or tfjs-backend-wasm's 'wasm': the same kernels run there), no gradient tape records (its steps have no gradients), the
 * caller does not need the routing back (load balancing), and the options and weights are ones it has steps for
 * (cpuLayerUnsupportedReason); otherwise it returns null having done nothing, and the caller runs the op chain.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {isQuantizedExpertWeights, QuantizedExpertWeights} from '../../executor/expert_weights.js';
import {registerKernelPathLayerForward} from '../../executor/layer_executor.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../../executor/layer_schema.js';
import type {ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';
import {HOST_KERNEL_BACKENDS, readFloat32, readInt32} from '../host_data.js';
import {PLAIN_SWIGLU} from '../kernel_names.js';
import {LayerSteps, wasmBatchedGemm, wasmBatchedGemmQuantized, wasmBatchedGemmSwiglu, wasmBatchedGemmSwigluQuantized}
    from '../wasm/batched_gemm_wasm.js';
import {batchedGemmImpl} from './batched_gemm_impl.js';
import {batchedGemmQuantizedImpl} from './batched_gemm_quantized_impl.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';
import {moeCombineImpl} from './moe_combine_impl.js';
import {moePermuteImpl, moePermuteIndex} from './moe_permute_impl.js';
import {moeTopkSelectImpl} from './moe_topk_select_impl.js';

/**
 * An expert projection as the kernels read it: float32 [E,K,N], or packed codes with their layout; the host arrays
 * read when a step needs them (the wasm GEMMs only when they pack an expert).
 */
type ExpertProjection =
    {kind: 'float', values: () => Float32Array, dataId: object} |
    {kind: 'packed', layout: ExpertWeightLayout, data: () => ExpertWeightData, dataId: object};

/** The flag that turns this path off (the op chain then runs every cpu forward): for comparisons. */
export const MOE_CPU_LAYER_FORWARD = 'MOE_CPU_LAYER_FORWARD';

let forwards = 0;

/** Forwards this path has run since the package loaded (specs check that it took a call). */
export function cpuLayerForwardCount(): number {
  return forwards;
}

/**
 * Why the whole-layer path does not take this call (the op chain runs it), or null when it does. Options it has no
 * step for: noaux_tc routing, latent projections, shared experts, activations other than SwiGLU;
 * expert weights other than float32 [E,K,N] tensors and non-transposed QuantizedExpertWeights.
 */
export function cpuLayerUnsupportedReason(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): string | null {
  if (x.shape[0] === 0) return 'no tokens';
  if (o.topkMethod === 'noaux_tc') return 'noaux_tc routing';
  if (o.latentSize != null) return 'latent projections';
  if (o.sharedExpertIntermediateSize > 0) return 'shared experts';
  if (o.activation !== 'swiglu') return `activation '${o.activation}'`;
  const [, H] = x.shape;
  const E = o.numExperts, I = o.moeIntermediateSize;
  if (projectionProblem(w.up_gate_proj_weight, [E, H, 2 * I]) != null) return 'up_gate_proj_weight\'s form';
  if (projectionProblem(w.down_proj_weight, [E, I, H]) != null) return 'down_proj_weight\'s form';
  return null;
}

function projectionProblem(w: unknown, shape: [number, number, number]): string | null {
  if (w instanceof tf.Tensor) {
    return w.dtype === 'float32' && w.shape.join() === shape.join() ? null : 'shape or dtype';
  }
  if (!isQuantizedExpertWeights(w)) return 'not a tensor';
  // The op chain validates packed weights (checkQuantizedExpertWeights); here only the form the steps read.
  if (w.transposed || w.shape.join() !== shape.join()) return 'transposed or shape';
  return w.format === 'float32' && w.values.dtype !== 'float32' ? 'values dtype' : null;
}

function floatProjection(backend: unknown, w: Tensor): ExpertProjection {
  return {kind: 'float', values: () => readFloat32(backend, w), dataId: w.dataId};
}

function readProjection(backend: unknown, w: Tensor | QuantizedExpertWeights): ExpertProjection {
  if (w instanceof tf.Tensor) return floatProjection(backend, w);
  if (w.format === 'float32') return floatProjection(backend, w.values);
  const [numExperts, depth, width] = w.shape;
  const layout: ExpertWeightLayout = {format: w.format, numExperts, depth, width, transposed: false,
    groupSize: w.groupSize, zeroPoint: w.zeroPoint};
  const data = (): ExpertWeightData => ({
    values: readInt32(backend, w.values),
    scales: w.scales == null ? null : w.format === 'mxfp4' ? readInt32(backend, w.scales) : readFloat32(backend, w.scales),
    zeroPoints: w.zeroPoints == null ? null : readFloat32(backend, w.zeroPoints),
  });
  return {kind: 'packed', layout, data, dataId: w.values.dataId};
}

/** batchedGemm's cpu kernel on host arrays (kernels/cpu/BatchedGemm.ts, BatchedGemmQuantized.ts). */
function gemm(backend: unknown, lhs: Float32Array, rows: number, k: number, w: ExpertProjection, numExperts: number,
              n: number, offsets: Int32Array): Float32Array {
  if (w.kind === 'float') {
    return wasmBatchedGemm(backend, lhs, rows, k, w.values, w.dataId, numExperts, n, offsets, false, null) ??
        batchedGemmImpl(lhs, rows, k, w.values(), numExperts, n, offsets, false, null);
  }
  return wasmBatchedGemmQuantized(backend, lhs, rows, w.layout, w.data, w.dataId, offsets, null) ??
      batchedGemmQuantizedImpl(lhs, rows, w.layout, w.data(), offsets, null);
}

/**
 * The wasm GEMM with the layer's permute or combine done on its rows in wasm memory (LayerSteps), or null when
 * the wasm kernels do not take it (the caller then runs the separate steps).
 */
function wasmGemmSteps(backend: unknown, lhs: Float32Array, rows: number, k: number, w: ExpertProjection,
                       numExperts: number, n: number, offsets: Int32Array, steps: LayerSteps): Float32Array | null {
  return w.kind === 'float' ?
      wasmBatchedGemm(backend, lhs, rows, k, w.values, w.dataId, numExperts, n, offsets, false, null, steps) :
      wasmBatchedGemmQuantized(backend, lhs, rows, w.layout, w.data, w.dataId, offsets, null, steps);
}

/** wasmGemmSteps for the up projection + SwiGLU (gemmSwiglu's wasm kernels). */
function wasmGemmSwigluSteps(backend: unknown, lhs: Float32Array, rows: number, k: number, w: ExpertProjection,
                             numExperts: number, intermediate: number, offsets: Int32Array, bias: Float32Array | null,
                             scale: Float32Array | null, steps: LayerSteps): Float32Array | null {
  return w.kind === 'float' ?
      wasmBatchedGemmSwiglu(backend, lhs, rows, k, w.values, w.dataId, numExperts, intermediate, offsets, false, bias,
                            scale, steps) :
      wasmBatchedGemmSwigluQuantized(backend, lhs, rows, w.layout, w.data, w.dataId, offsets, bias, scale, steps);
}

/** batchedGemmSwiglu's cpu kernel (plain SwiGLU times the row scale) on host arrays: [rows, intermediate]. */
function gemmSwiglu(backend: unknown, lhs: Float32Array, rows: number, k: number, w: ExpertProjection,
                    numExperts: number, intermediate: number, offsets: Int32Array, bias: Float32Array | null,
                    scale: Float32Array | null): Float32Array {
  if (w.kind === 'float') {
    return wasmBatchedGemmSwiglu(backend, lhs, rows, k, w.values, w.dataId, numExperts, intermediate, offsets, false,
                                 bias, scale) ??
        fusedSwigluScaleImpl(batchedGemmImpl(lhs, rows, k, w.values(), numExperts, 2 * intermediate, offsets, false, bias),
                             rows, intermediate, scale, PLAIN_SWIGLU);
  }
  return wasmBatchedGemmSwigluQuantized(backend, lhs, rows, w.layout, w.data, w.dataId, offsets, bias, scale) ??
      fusedSwigluScaleImpl(batchedGemmQuantizedImpl(lhs, rows, w.layout, w.data(), offsets, bias), rows, intermediate,
                           scale);
}

/**
 * y [T,H] for x [T,H] as fused_moe_forward.ts's op chain computes it on the cpu kernels (docs/semantics.md
 * section 7), or null when cpuLayerUnsupportedReason gives a reason.
 */
export function cpuLayerForward(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): Tensor2D | null {
  if (cpuLayerUnsupportedReason(x, w, o) != null) return null;
  const backend = tf.backend();
  const [T, H] = x.shape;
  const E = o.numExperts, k = o.topK, I = o.moeIntermediateSize;
  const xs = readFloat32(backend, x);
  // routerLogits: one segment of batchedGemm over the gate weight (its packed copy shared with the op chain's).
  // The router also scores the Z identity experts: [T, E+Z].
  const gate = w.gate_weight as Tensor2D;
  const scored = gate.shape[1];
  const logits = gemm(backend, xs, T, H, floatProjection(backend, gate), 1, scored, Int32Array.of(0, T));
  if (o.routerBias) {
    // tf.add on the cpu backend: the float32 sum.
    const bias = readFloat32(backend, w.gate_bias as Tensor);
    for (let i = 0; i < T * scored; i++) logits[i] = Math.fround(logits[i] + bias[i % scored]);
  }
  const selectionBias = o.useCorrectionBias ? readFloat32(backend, w.gate_correction_bias as Tensor) : null;
  const sparsemixer = o.topkMethod === 'sparsemixer';
  const {topkIds, topkWeights} = moeTopkSelectImpl(
      logits, T, scored, selectionBias, k, o.renormalize, o.renormalizeEpsilon ?? 0, o.routedScalingFactor, o.nGroup,
      o.topkGroup, sparsemixer ? 'sparsemixer' : 'greedy', sparsemixer ? o.sparsemixerEpsilon : 0.01);
  const onInput = o.routingWeightOn === 'input';
  const {numRows, expertOffsets, rowMap} = moePermuteIndex(topkIds, T, k, E, 1, o.zeroExperts);
  const upGate = readProjection(backend, w.up_gate_proj_weight);
  const down = readProjection(backend, w.down_proj_weight);
  const upBias = o.withBias ? readFloat32(backend, w.up_gate_proj_bias as Tensor) : null;
  // probInAdvance: each permuted row's routing weight (weightPerRow: alignment 1 gives every row one slot).
  let rowScale: Float32Array | null = null;
  if (o.probInAdvance) {
    rowScale = new Float32Array(numRows);
    for (let i = 0; i < T * k; i++) if (rowMap[i] >= 0) rowScale[rowMap[i]] = topkWeights[i];
  }
  // The wasm GEMMs gather the permuted rows from x themselves (rows that are not weighted first: the permute's
  // copy is a plain one); else the permute's rows as the op chain makes them.
  let activated: Float32Array | null = null;
  if (!onInput) {
    const gather = new Int32Array(numRows);
    for (let i = 0; i < T * k; i++) if (rowMap[i] >= 0) gather[rowMap[i]] = Math.floor(i / k);
    activated = wasmGemmSwigluSteps(backend, xs, numRows, H, upGate, E, I, expertOffsets, upBias, rowScale, {gather});
  }
  if (activated == null) {
    const {permutedX} = moePermuteImpl(xs, T, H, topkIds, k, E, 1, onInput ? topkWeights : null, o.zeroExperts);
    activated = gemmSwiglu(backend, permutedX, numRows, H, upGate, E, I, expertOffsets, upBias, rowScale);
  }
  const downBias = o.withBias ? readFloat32(backend, w.down_proj_bias as Tensor) : null;
  const weightsApplied = o.probInAdvance || onInput;
  // Without biases and identity slots the wasm kernels combine the down projection's rows where it wrote them.
  let out = downBias == null && o.zeroExperts === 0 ?
      wasmGemmSteps(backend, activated, numRows, I, down, E, H, expertOffsets,
                    {combine: {rowMap, topkWeights, tokens: T, topK: k, weightsApplied}}) :
      null;
  if (out == null) {
    const projected = gemm(backend, activated, numRows, I, down, E, H, expertOffsets);
    out = moeCombineImpl(projected, numRows, H, rowMap, topkWeights, topkIds, T, k, downBias,
                         downBias == null ? 0 : E, weightsApplied, o.zeroExperts > 0 ? xs : null);
  }
  forwards++;
  return tf.tensor2d(out, [T, H]);
}

/** Whether the path may run now: a host backend active ('cpu', 'wasm'), flag on, no gradient tape. */
function layerPathActive(): boolean {
  if (!HOST_KERNEL_BACKENDS.includes(tf.getBackend()) || !tf.env().getBool(MOE_CPU_LAYER_FORWARD)) return false;
  return (tf.engine() as unknown as {state: {gradientDepth: number}}).state.gradientDepth === 0;
}

/** Registers the flag and plugs the path into the cpu kernel path of the layer (src/register_all.ts, once). */
export function registerCpuLayerForward(): void {
  tf.env().registerFlag(MOE_CPU_LAYER_FORWARD, () => true);
  for (const backendName of HOST_KERNEL_BACKENDS) {
    registerKernelPathLayerForward(backendName, {
      forward: (x, w, o, context) => layerPathActive() && !context.needsRouting ? cpuLayerForward(x, w, o) : null,
    });
  }
}
