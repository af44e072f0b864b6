/**
 * A Hugging Face block's routed experts straight into the layer's expert weight format (docs/formats.md), one expert
 * at a time on the host: the peak is the packed layer plus one expert's float32, never the layer's float32. The
 * sources are float32 tensors (read on the host) or raw F16/BF16 data (readSafetensors keepDtype), both in torch's
 * Linear orientation ([out, in] per expert), transposed here into the layer's [in, out].
 */
import * as tf from '@tensorflow/tfjs-core';

import {defaultGroupSize, hasScales} from '../executor/expert_weights.js';
import type {ExpertWeightName, FusedMoEOptions} from '../executor/layer_schema.js';
import {halfToFloatTable} from '../kernels/expert_weight_formats.js';
import {createExpertWeightsBuilder, QuantizedExpertWeights} from '../ops/quantize_expert_weights.js';
import type {HfMoeSpec} from './hf_families.js';
import type {WeightSource} from './hf_import.js';
import type {RawSafetensor} from './safetensors.js';

/** Rows [first, first + rows) of a [.., cols] float source as float32 (one expert's part). */
function readRows(src: tf.Tensor | RawSafetensor, first: number, rows: number, cols: number): Float32Array {
  if (src instanceof tf.Tensor) {
    if (tf.getBackend() === 'webgpu') {
      throw new Error('loadHuggingFaceMoe: packed expert formats convert on the host; load on the cpu backend ' +
                      '(the layer then runs on any backend)');
    }
    const flat = src.dataSync() as Float32Array;
    return flat.subarray(first * cols, (first + rows) * cols);
  }
  const view = new DataView(src.data.buffer, src.data.byteOffset + 2 * first * cols, 2 * rows * cols);
  const out = new Float32Array(rows * cols);
  if (src.dtype === 'BF16') {
    // bfloat16 is the top half of a float32 (docs/formats.md 3): shift the bits into place.
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < out.length; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else {
    const table = halfToFloatTable();
    for (let i = 0; i < out.length; i++) out[i] = table[view.getUint16(2 * i, true)];
  }
  return out;
}

/** out[k * stride + col0 + n] = rows[n * depth + k]: torch [out, in] rows into the layer's [in, out] columns. */
function transposeInto(rows: Float32Array, width: number, depth: number, out: Float32Array, col0: number,
                       stride: number): void {
  for (let n = 0; n < width; n++) {
    const row = n * depth;
    for (let k = 0; k < depth; k++) out[k * stride + col0 + n] = rows[row + k];
  }
}

export function loadExpertsPacked(spec: HfMoeSpec, src: WeightSource, fused: boolean, o: Readonly<FusedMoEOptions>):
    Record<ExpertWeightName, QuantizedExpertWeights> {
  const {hiddenSize: H, naming} = spec;
  const {numExperts: E, moeIntermediateSize: I} = spec.options;
  const builder = (shape: [number, number, number]) => {
    const format = o.expertWeightFormat;
    return createExpertWeightsBuilder(shape, format, hasScales(format) ?
        {groupSize: defaultGroupSize(format, shape[1], o.quantGroupSize), zeroPoint: o.quantZeroPoint} : {});
  };
  const upGate = builder([E, H, 2 * I]), down = builder([E, I, H]);
  const {gate: g, up: u, down: d} = naming.expertProj;
  const fusedUpGate = fused ? src.source(src.first(naming.fusedGateUp)!, [E, 2 * I, H], 'fused experts [E,2I,H]') : null;
  const fusedDown = fused ?
      src.source(src.first(naming.fusedDown) ?? naming.fusedDown[0], [E, H, I], 'fused experts [E,H,I]') : null;
  const expertUpGate = new Float32Array(H * 2 * I), expertDown = new Float32Array(I * H);
  for (let e = 0; e < E; e++) {
    if (fusedUpGate != null) {
      transposeInto(readRows(fusedUpGate, e * 2 * I, 2 * I, H), 2 * I, H, expertUpGate, 0, 2 * I);
      transposeInto(readRows(fusedDown!, e * H, H, I), H, I, expertDown, 0, H);
    } else {
      const part = (proj: string, shape: [number, number]) =>
          readRows(src.source(`experts.${e}.${proj}.weight`, shape, `expert ${e} ${proj}.weight`), 0, shape[0], shape[1]);
      transposeInto(part(g, [I, H]), I, H, expertUpGate, 0, 2 * I);
      transposeInto(part(u, [I, H]), I, H, expertUpGate, I, 2 * I);
      transposeInto(part(d, [H, I]), H, I, expertDown, 0, H);
    }
    upGate.setExpert(e, expertUpGate);
    down.setExpert(e, expertDown);
  }
  const upGateQ = upGate.build();
  try {
    return {up_gate_proj_weight: upGateQ, down_proj_weight: down.build()};
  } catch (err) {
    tf.dispose(upGateQ as unknown as tf.TensorContainer);
    throw err;
  }
}
