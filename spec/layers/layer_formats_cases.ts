// The expert weight formats a FusedMoE spec runs through (cpu, composite, webgpu share them).
import type {ExpertWeightFormat, FusedMoEArgs} from 'tfjs-moe';

export interface LayerFormatVariant {
  label: string;
  format: ExpertWeightFormat;
  groupSize?: number;
  zeroPoint?: boolean;
}

export const LAYER_FORMAT_VARIANTS: LayerFormatVariant[] = [
  {label: 'float32', format: 'float32'},
  {label: 'float16', format: 'float16'},
  {label: 'bfloat16', format: 'bfloat16'},
  {label: 'int8', format: 'int8'},
  {label: 'int8 g8', format: 'int8', groupSize: 8},
  {label: 'int4 g32', format: 'int4'},
  {label: 'int4 g64 zp', format: 'int4', groupSize: 64, zeroPoint: true},
  {label: 'mxfp4', format: 'mxfp4'},
];

export function layerFormatArgs(v: LayerFormatVariant): Partial<FusedMoEArgs> {
  return {expertWeightFormat: v.format, quantGroupSize: v.groupSize ?? null, quantZeroPoint: v.zeroPoint ?? false};
}
