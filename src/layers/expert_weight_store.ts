/**
 * The routed experts' weights of a FusedMoE stored in a packed format (docs/formats.md): one non-trainable variable
 * per packed tensor (`<name>_values`, `<name>_scales`, `<name>_zero_points`), so that model.save and
 * tf.loadLayersModel carry the codes bit for bit through tfjs's own weight handlers.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

import {defaultGroupSize, ExpertWeightLayout, logicalShape, packedWeightSpecs, PackedWeightSpec} from
    '../executor/expert_weights.js';
import {EXPERT_WEIGHT_NAMES, ExpertWeightName, FusedMoEOptions} from '../executor/layer_schema.js';
import {checkQuantizedExpertWeights, createExpertWeightsBuilder, dequantizeExpertWeights, QuantizedExpertWeights} from
    '../ops/quantize_expert_weights.js';

export function isExpertWeightName(name: string): name is ExpertWeightName {
  return (EXPERT_WEIGHT_NAMES as readonly string[]).includes(name);
}

type AddWeight =
    (name: string, shape: number[], dtype: 'float32' | 'int32', part: PackedWeightSpec['part']) => tfl.LayerVariable;
type Parts = Partial<Record<PackedWeightSpec['part'], tfl.LayerVariable>>;

export class ExpertWeightStore {
  private readonly variables = new Map<ExpertWeightName, {layout: ExpertWeightLayout, parts: Parts}>();

  constructor(private readonly layer: {name: string}, private readonly options: Readonly<FusedMoEOptions>) {}

  /** The layout of weight `name` of logical shape [E,K,N] in this store's format. */
  layout(shape: readonly number[]): ExpertWeightLayout {
    const [numExperts, depth, width] = shape;
    const {expertWeightFormat: format, quantGroupSize, quantZeroPoint: zeroPoint} = this.options;
    return {format, numExperts, depth, width, transposed: false, groupSize: defaultGroupSize(format, depth, quantGroupSize),
      zeroPoint};
  }

  /** Creates the packed variables of `name` through the layer's addWeight. */
  create(name: ExpertWeightName, shape: readonly number[], addWeight: AddWeight): void {
    const layout = this.layout(shape);
    const parts: Parts = {};
    for (const spec of packedWeightSpecs(layout)) parts[spec.part] = addWeight(name + spec.suffix, spec.shape, spec.dtype, spec.part);
    this.variables.set(name, {layout, parts});
  }

  /** Every packed variable (for moving them between backends). */
  allVariables(): tfl.LayerVariable[] {
    return [...this.variables.values()].flatMap(({parts}) => Object.values(parts) as tfl.LayerVariable[]);
  }

  read(name: ExpertWeightName): QuantizedExpertWeights {
    const {layout: l, parts} = this.variables.get(name)!;
    const q: QuantizedExpertWeights = {format: l.format, shape: logicalShape(l), transposed: false,
      groupSize: l.groupSize, zeroPoint: l.zeroPoint, values: parts.values!.read()};
    if (parts.scales != null) q.scales = parts.scales.read();
    if (parts.zeroPoints != null) q.zeroPoints = parts.zeroPoints.read();
    return q;
  }

  /** Frees the variables of `name` with the layer's `drop`. */
  free(name: ExpertWeightName, drop: (v: tfl.LayerVariable) => void): void {
    const entry = this.variables.get(name);
    if (entry == null) return;
    for (const v of Object.values(entry.parts)) drop(v!);
    this.variables.delete(name);
  }

  /**
   * Throws unless `value` can be written to `name` (a float32 [E,K,N] tensor, or packed weights of this layout);
   * `shape` is the logical shape before the variables exist.
   */
  check(name: ExpertWeightName, value: tf.Tensor | QuantizedExpertWeights, shape?: readonly number[]): void {
    const existing = this.variables.get(name)?.layout ?? null;
    const want = shape != null ? [...shape] : existing != null ? logicalShape(existing) : null;
    const who = `FusedMoE '${this.layer.name}': weight '${name}'`;
    if (value instanceof tf.Tensor) {
      if (value.isDisposed) throw new Error(`${who} must be float32 [${want}] or a QuantizedExpertWeights, got a disposed tensor`);
      if (value.dtype !== 'float32' || (want != null && !tf.util.arraysEqual(value.shape, want))) {
        throw new Error(`${who} must be float32 [${want}] or a QuantizedExpertWeights, got ${value.dtype} [${value.shape}]`);
      }
      if (this.options.expertWeightFormat !== 'float32') this.checkHostReadable(name);
      return;
    }
    const {layout} = checkQuantizedExpertWeights('FusedMoE.setNamedWeights', name, value);
    const expected = this.layout(want ?? logicalShape(layout));
    const differs = (Object.keys(expected) as Array<keyof ExpertWeightLayout>).filter(k => expected[k] !== layout[k]);
    if (differs.length > 0) {
      const show = (l: ExpertWeightLayout) => differs.map(k => `${k} ${JSON.stringify(l[k])}`).join(', ');
      throw new Error(`${who} must be a QuantizedExpertWeights matching the layer (${show(expected)}), got ${
          show(layout)}${layout.transposed ? ' (transposeQuantizedExpertWeights gives the [E,K,N] layout)' : ''}` +
          (layout.format !== expected.format ? ' (or use layer.quantizeExperts to change the layer\'s format)' : ''));
    }
  }

  /**
   * What storing a checked value takes: packed weights as they are, float32 ones quantized into new tensors (the
   * caller disposes them when they differ from `value`). Quantizing is also the last check: the integer formats and
   * mxfp4 need finite weights (docs/formats.md).
   */
  prepare(value: tf.Tensor | QuantizedExpertWeights): QuantizedExpertWeights {
    return value instanceof tf.Tensor ? this.convert(
        {format: 'float32', shape: value.shape as [number, number, number], transposed: false, groupSize: 0,
          zeroPoint: false, values: value}) : value;
  }

  /** Stores prepared weights of this layout in the variables of `name` (the variables keep their own reference). */
  store(name: ExpertWeightName, q: QuantizedExpertWeights): void {
    const {parts} = this.variables.get(name)!;
    parts.values!.write(q.values);
    if (parts.scales != null) parts.scales.write(q.scales!);
    if (parts.zeroPoints != null) parts.zeroPoints.write(q.zeroPoints!);
  }

  /** Writes a checked value: prepare, then store. */
  write(name: ExpertWeightName, value: tf.Tensor | QuantizedExpertWeights): void {
    const q = this.prepare(value);
    try {
      this.store(name, q);
    } finally {
      if (q !== value) tf.dispose(q as unknown as tf.TensorContainer);
    }
  }

  /**
   * New tensors holding q ([E,K,N] layout, any format) in this store's format. From float32, expert by expert on
   * the host (one expert's float32 copy at a time); from a packed format through its exact dequantization.
   */
  convert(q: QuantizedExpertWeights): QuantizedExpertWeights {
    const l = this.layout(q.shape);
    if (q.format === l.format && q.groupSize === l.groupSize && q.zeroPoint === l.zeroPoint) {
      const copy: QuantizedExpertWeights = {...q, values: tf.clone(q.values)};
      if (q.scales != null) copy.scales = tf.clone(q.scales);
      if (q.zeroPoints != null) copy.zeroPoints = tf.clone(q.zeroPoints);
      return copy;
    }
    const float = q.format === 'float32' ? q.values : dequantizeExpertWeights(q);
    try {
      if (l.format === 'float32') {
        return {format: 'float32', shape: q.shape, transposed: false, groupSize: 0, zeroPoint: false,
          values: float === q.values ? tf.clone(float) : float};
      }
      this.checkHostReadable(null);
      const opts = l.groupSize === 0 ? {} : {groupSize: l.groupSize, zeroPoint: l.zeroPoint};
      const builder = createExpertWeightsBuilder(q.shape, l.format, opts);
      for (let e = 0; e < l.numExperts; e++) {
        const one = tf.slice(float, [e, 0, 0], [1, -1, -1]);
        try {
          builder.setExpert(e, one.dataSync() as Float32Array);
        } finally {
          one.dispose();
        }
      }
      return builder.build();
    } finally {
      if (float !== q.values && l.format !== 'float32') float.dispose();
    }
  }

  private checkHostReadable(name: string | null): void {
    if (tf.getBackend() === 'webgpu') {
      throw new Error(`FusedMoE '${this.layer.name}': quantizing ${name == null ? 'expert weights' : `'${name}'`} to '${
          this.options.expertWeightFormat}' reads them on the host, which webgpu cannot do synchronously: quantize ` +
          'with quantizeExpertWeightsAsync and pass the QuantizedExpertWeights (or convert on the cpu backend)');
    }
  }
}
