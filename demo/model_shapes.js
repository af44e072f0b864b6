// The one table of model shapes used by the demos and benchmarks (`npm run demo`, the demo page, bench/*): real
// hidden and intermediate sizes and everything that shapes the routing (docs/semantics.md, section 9). Plain data in
// a .js module (typed by model_shapes.d.ts) so that Node scripts, the page bundle and the TypeScript benches all
// read the same file.

/** @type {import('./model_shapes.js').ModelShape[]} */
export const MODEL_SHAPES = [
  {id: 'qwen3', aliases: ['qwen3-30b-a3b'], label: 'Qwen3-30B-A3B', detail: '128 experts, top-8, softmax',
    hidden: 2048, intermediate: 768, numExperts: 128, topK: 8, sharedExperts: 0,
    routing: {topkMethod: 'greedy', renormalize: true}, defaultDivisor: 16},
  {id: 'olmoe', aliases: ['olmoe-1b-7b'], label: 'OLMoE-1B-7B', detail: '64 experts, top-8, softmax, no renormalization',
    hidden: 2048, intermediate: 1024, numExperts: 64, topK: 8, sharedExperts: 0,
    routing: {topkMethod: 'greedy', renormalize: false}, defaultDivisor: 16},
  {id: 'mixtral', aliases: ['mixtral-8x7b'], label: 'Mixtral-8x7B', detail: '8 experts, top-2',
    hidden: 4096, intermediate: 14336, numExperts: 8, topK: 2, sharedExperts: 0,
    routing: {topkMethod: 'greedy', renormalize: true}, defaultDivisor: 32},
  {id: 'deepseek-v3', aliases: [], label: 'DeepSeek-V3-like', detail: '256 experts, top-8, noaux_tc, 8 groups, 1 shared',
    hidden: 7168, intermediate: 2048, numExperts: 256, topK: 8, sharedExperts: 1,
    routing: {topkMethod: 'noaux_tc', nGroup: 8, topkGroup: 4, routedScalingFactor: 2.5, renormalize: true,
      useCorrectionBias: true}, defaultDivisor: 32},
  {id: 'tiny', aliases: [], label: 'Tiny', detail: '8 experts, top-2, H 64', hidden: 64, intermediate: 32,
    numExperts: 8, topK: 2, sharedExperts: 0, routing: {topkMethod: 'greedy', renormalize: true}, defaultDivisor: 1},
];

/** The shape named `name` (an id or an alias), or undefined. */
export function findModelShape(name) {
  return MODEL_SHAPES.find(m => m.id === name || m.aliases.includes(name));
}

/**
 * FusedMoE arguments and hidden size of `shape` with hidden and intermediate sizes divided by `divisor`
 * (at least 4, multiples of 4 where the real size is; the routing stays real).
 */
export function scaledModel(shape, divisor) {
  const scale = v => Math.max(4, Math.round(v / divisor / 4) * 4);
  const I = scale(shape.intermediate);
  return {
    hidden: scale(shape.hidden),
    args: {numExperts: shape.numExperts, topK: shape.topK, moeIntermediateSize: I,
      sharedExpertIntermediateSize: shape.sharedExperts * I, ...shape.routing},
  };
}
