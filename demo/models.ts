/**
 * The model shapes a user picks from (semantics doc section 9). A full layer does not fit a page (Qwen3-30B-A3B's
 * experts alone are 1.6 GB per layer in f32), so hidden and intermediate sizes are divided by a width divisor
 * while everything that shapes the routing stays real: expert count, top-k, groups, scaling, shared experts.
 */
import type {FusedMoEArgs} from 'tfjs-moe';

export interface ModelShape {
  id: string;
  label: string;
  hidden: number;
  intermediate: number;
  args: Omit<FusedMoEArgs, 'moeIntermediateSize' | 'sharedExpertIntermediateSize'> & {sharedExperts?: number};
  /** Width divisor the page starts with (keeps the weights a few MB). */
  defaultDivisor: number;
}

export const MODELS: ModelShape[] = [
  {id: 'qwen3-30b-a3b', label: 'Qwen3-30B-A3B (128 experts, top-8, softmax)', hidden: 2048, intermediate: 768,
    args: {numExperts: 128, topK: 8, topkMethod: 'greedy', renormalize: true}, defaultDivisor: 16},
  {id: 'deepseek-v3', label: 'DeepSeek-V3-like (256 experts, top-8, noaux_tc, 8 groups)', hidden: 7168,
    intermediate: 2048, args: {numExperts: 256, topK: 8, topkMethod: 'noaux_tc', nGroup: 8, topkGroup: 4,
      routedScalingFactor: 2.5, useCorrectionBias: true, renormalize: true, sharedExperts: 1}, defaultDivisor: 32},
  {id: 'mixtral-8x7b', label: 'Mixtral-8x7B (8 experts, top-2)', hidden: 4096, intermediate: 14336,
    args: {numExperts: 8, topK: 2, topkMethod: 'greedy', renormalize: true}, defaultDivisor: 32},
  {id: 'tiny', label: 'Tiny (8 experts, top-2, H 64)', hidden: 64, intermediate: 32,
    args: {numExperts: 8, topK: 2, topkMethod: 'greedy', renormalize: true}, defaultDivisor: 1},
];

export const DIVISORS = [1, 2, 4, 8, 16, 32, 64, 128];
export const TOKEN_COUNTS = [1, 4, 16, 64, 256];

/** Layer arguments and hidden size for a model at a width divisor (sizes at least 4, multiples of 4 where real). */
export function scaledShape(m: ModelShape, divisor: number): {hidden: number, args: FusedMoEArgs} {
  const scale = (v: number) => Math.max(4, Math.round(v / divisor / 4) * 4);
  const {sharedExperts, ...rest} = m.args;
  const I = scale(m.intermediate);
  return {
    hidden: scale(m.hidden),
    args: {...rest, moeIntermediateSize: I, sharedExpertIntermediateSize: (sharedExperts ?? 0) * I},
  };
}
