/** DeepSeek-V3 "noaux_tc" grouped routing on host arrays (docs/semantics.md section 2), in float32 arithmetic. */
import {selectTopK} from './routing_select.js';

const f32 = Math.fround;

/**
 * Group score: the sum of the two largest biased scores of the group (the one score of a one-expert group).
 * NaN members rank last; a group short of two numeric scores scores -Infinity, which orders it exactly as a
 * NaN sum would (below every finite group, ties to the lower group) and counts as non-finite for the fallback.
 */
function groupScore(biased: Float32Array, begin: number, size: number): number {
  let first = -Infinity, second = -Infinity;
  for (let i = begin; i < begin + size; i++) {
    const v = biased[i] !== biased[i] ? -Infinity : biased[i];
    if (v > first) {
      second = first;
      first = v;
    } else if (v > second) {
      second = v;
    }
  }
  return size === 1 ? first : f32(first + second);
}

export function getMoeScoresImpl(
    gatingOutput: Float32Array, numTokens: number, numExperts: number, bias: Float32Array | null, nGroup: number,
    topkGroup: number, topK: number, routedScalingFactor: number, renormalize: boolean):
    {scores: Float32Array, topkWeights: Float32Array, topkIds: Int32Array} {
  const scores = new Float32Array(numTokens * numExperts);
  const topkWeights = new Float32Array(numTokens * topK);
  const topkIds = new Int32Array(numTokens * topK);
  const groupSize = numExperts / nGroup;
  const rsf = f32(routedScalingFactor);

  const biased = new Float32Array(numExperts);
  const groupScores = new Float32Array(nGroup);
  const keptGroups = new Int32Array(topkGroup);
  const eligible = new Uint8Array(numExperts);
  const taken = new Uint8Array(Math.max(numExperts, nGroup));

  for (let t = 0; t < numTokens; t++) {
    const row = t * numExperts;
    for (let e = 0; e < numExperts; e++) {
      const s = f32(1 / (1 + Math.exp(-gatingOutput[row + e])));
      scores[row + e] = s;
      biased[e] = bias == null ? s : s + bias[e];
    }
    let anyFinite = false;
    for (let g = 0; g < nGroup; g++) {
      groupScores[g] = groupScore(biased, g * groupSize, groupSize);
      if (Number.isFinite(groupScores[g])) anyFinite = true;
    }

    const out = t * topK;
    if (!anyFinite) {
      // FastDeploy's fallback for rows with nothing to rank (e.g. NaN logits): the first k experts, equal weights.
      for (let j = 0; j < topK; j++) {
        topkIds[out + j] = j;
        topkWeights[out + j] = 1 / topK;
      }
      continue;
    }

    selectTopK(groupScores, 0, nGroup, topkGroup, keptGroups, 0, taken);
    // Experts outside the kept groups are never chosen, not even over a NaN of a kept group (semantics 2.5).
    eligible.fill(0);
    for (let i = 0; i < topkGroup; i++) eligible.fill(1, keptGroups[i] * groupSize, (keptGroups[i] + 1) * groupSize);
    selectTopK(biased, 0, numExperts, topK, topkIds, out, taken, eligible);

    let sum = 0;
    for (let j = 0; j < topK; j++) {
      const v = scores[row + topkIds[out + j]];
      topkWeights[out + j] = v;
      sum = f32(sum + v);
    }
    const denom = f32(sum + 1e-20);
    for (let j = 0; j < topK; j++) {
      const w = renormalize ? f32(topkWeights[out + j] / denom) : topkWeights[out + j];
      topkWeights[out + j] = w * rsf;
    }
  }
  return {scores, topkWeights, topkIds};
}
