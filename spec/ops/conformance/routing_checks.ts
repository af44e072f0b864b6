/**
 * Id comparison for routing outputs. Kernels rank float32 values, the reference float64 ones, so two experts
 * whose float64 scores differ by less than float32 rounding may legitimately come out in either order. Such a
 * near-tie is accepted only when the float64 values differ (0 < |diff| <= tol): exact float64 ties must follow
 * the doc's rule (lower index first), and everything else must match exactly.
 */
import type {RefScoresResult} from '../../reference/moe_reference.js';
import {refRankDescending} from '../../reference/moe_reference.js';

/** Absolute near-tie window for values of magnitude ~1 computed in float32 (a few ulps, with headroom). */
const NEAR_TIE = 2e-6;

function isNearTie(a: number, b: number): boolean {
  const diff = Math.abs(a - b);
  return diff > 0 && diff <= NEAR_TIE * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Ids are in [0,E) and distinct within the row; returns a message or null. */
function validRow(got: ArrayLike<number>, t: number, k: number, E: number): string | null {
  const seen = new Set<number>();
  for (let j = 0; j < k; j++) {
    const e = got[t * k + j];
    if (!Number.isInteger(e) || e < 0 || e >= E) return `token ${t} slot ${j}: id ${e} outside [0,${E})`;
    if (seen.has(e)) return `token ${t}: id ${e} chosen twice`;
    seen.add(e);
  }
  return null;
}

function rowText(a: ArrayLike<number>, t: number, k: number): string {
  return `[${Array.from(a).slice(t * k, (t + 1) * k).join(',')}]`;
}

export interface SelectionCheck {
  /** First failure, or null. */
  failure: string | null;
  /** Rows accepted through a float32/float64 near-tie. */
  nearTieRows: number;
}

/**
 * Checks got ids against the reference's ids, slot by slot, allowing near-ties on `rankValues` [T*E] (the
 * float64 values the reference ranked).
 */
export function checkSelection(
    got: ArrayLike<number>, ref: ArrayLike<number>, rankValues: ArrayLike<number>, T: number, E: number,
    k: number): SelectionCheck {
  let nearTieRows = 0;
  for (let t = 0; t < T; t++) {
    const invalid = validRow(got, t, k, E);
    if (invalid) return {failure: invalid, nearTieRows};
    let nearTie = false;
    for (let j = 0; j < k; j++) {
      const g = got[t * k + j], r = ref[t * k + j];
      if (g === r) continue;
      if (!isNearTie(rankValues[t * E + g], rankValues[t * E + r])) {
        return {
          failure: `token ${t}: ids ${rowText(got, t, k)}, expected ${rowText(ref, t, k)} ` +
              `(slot ${j}: value of ${g} = ${rankValues[t * E + g]}, of ${r} = ${rankValues[t * E + r]})`,
          nearTieRows,
        };
      }
      nearTie = true;
    }
    if (nearTie) nearTieRows++;
  }
  return {failure: null, nearTieRows};
}

/**
 * getMoeScores ids: like checkSelection on the reference's candidate values (biased scores, -inf outside the
 * kept groups); where the kept groups themselves are decided by a near-tie of group scores, any valid choice
 * from at most topkGroup groups is accepted (the weights are then checked against the ids actually chosen).
 */
export function checkGroupedSelection(
    got: ArrayLike<number>, ref: RefScoresResult, T: number, E: number, k: number, nGroup: number,
    topkGroup: number): SelectionCheck {
  const groupSize = E / nGroup;
  let nearTieRows = 0;
  for (let t = 0; t < T; t++) {
    const invalid = validRow(got, t, k, E);
    if (invalid) return {failure: invalid, nearTieRows};
    const gs = ref.groupScores.subarray(t * nGroup, (t + 1) * nGroup);
    const order = refRankDescending(gs);
    if (!ref.fallback[t] && topkGroup < nGroup && isNearTie(gs[order[topkGroup - 1]], gs[order[topkGroup]])) {
      const groups = new Set<number>();
      for (let j = 0; j < k; j++) groups.add(Math.floor(got[t * k + j] / groupSize));
      if (groups.size > topkGroup) {
        return {failure: `token ${t}: ids ${rowText(got, t, k)} span ${groups.size} groups > topkGroup`, nearTieRows};
      }
      nearTieRows++;
      continue;
    }
    const kept = new Set(order.slice(0, topkGroup));
    const candidates = new Float64Array(E);
    for (let e = 0; e < E; e++) candidates[e] = kept.has(Math.floor(e / groupSize)) ? ref.biased[t * E + e] : -Infinity;
    const row = checkSelection(
        got.length ? Array.from(got).slice(t * k, (t + 1) * k) : [], Array.from(ref.ids).slice(t * k, (t + 1) * k),
        candidates, 1, E, k);
    if (row.failure) {
      return {failure: ref.fallback[t] ? `token ${t} (fallback row): ${row.failure}` : `token ${t}: ${row.failure}`,
        nearTieRows};
    }
    nearTieRows += row.nearTieRows;
  }
  return {failure: null, nearTieRows};
}

/** Softmax-routing weights of the ids actually chosen: p[id], divided by their sum when normalised. */
export function topkWeightsFor(
    ids: ArrayLike<number>, probs: ArrayLike<number>, T: number, E: number, k: number,
    applyNormWeight: boolean): Float64Array {
  const w = new Float64Array(T * k);
  for (let t = 0; t < T; t++) {
    let sum = 0;
    for (let j = 0; j < k; j++) {
      w[t * k + j] = probs[t * E + clampId(ids[t * k + j], E)];
      sum += w[t * k + j];
    }
    if (applyNormWeight) for (let j = 0; j < k; j++) w[t * k + j] /= sum;
  }
  return w;
}

/** noaux_tc weights of the ids actually chosen (fallback rows: 1/k). */
export function groupedWeightsFor(
    ids: ArrayLike<number>, ref: RefScoresResult, T: number, E: number, k: number, rsf: number,
    renormalize: boolean): Float64Array {
  const w = new Float64Array(T * k);
  for (let t = 0; t < T; t++) {
    if (ref.fallback[t]) {
      for (let j = 0; j < k; j++) w[t * k + j] = 1 / k;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < k; j++) sum += ref.scores[t * E + clampId(ids[t * k + j], E)];
    for (let j = 0; j < k; j++) {
      const v = ref.scores[t * E + clampId(ids[t * k + j], E)];
      w[t * k + j] = (renormalize ? v / (sum + 1e-20) : v) * rsf;
    }
  }
  return w;
}

/** Out-of-range ids already failed the id check; clamping only keeps the weight comparison defined. */
function clampId(e: number, E: number): number {
  return Math.min(Math.max(e, 0), E - 1);
}
