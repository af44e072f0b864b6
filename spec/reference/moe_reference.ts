/**
 * Independent float64 reference for every MoE op and the FusedMoE forward, written only from
 * docs/moe-semantics.md (never from src/), so that a shared misreading cannot hide in both.
 *
 * Everything is plain loops over row-major flat arrays in float64. The doc says routing is float32; the
 * reference still computes in float64 and makes its top-k decisions on float64 values. Tests therefore have to
 * accept f32-vs-f64 near-ties (see the extra `probs`/`selectionScores`/`biased`/`groupScores` outputs, which
 * exist so tests can recognise a near-tie instead of loosening the id comparison).
 */

export interface RefTopkResult {
  ids: Int32Array;          // [T*k]
  weights: Float64Array;    // [T*k]
  /** Extra (not in the op's outputs): softmax probabilities [T*E]. */
  probs: Float64Array;
  /** Extra: the values selection ranked, p + bias (or p) [T*E]. */
  selectionScores: Float64Array;
}

export interface RefScoresResult {
  scores: Float64Array;     // [T*E] dense sigmoid
  weights: Float64Array;    // [T*k]
  ids: Int32Array;          // [T*k]
  /** Extra: scores + bias [T*E]. */
  biased: Float64Array;
  /** Extra: group scores [T*G] (sum of the two largest biased values in each group). */
  groupScores: Float64Array;
  /** Extra: per token, 1 when the all-groups-non-finite fallback was taken. */
  fallback: Uint8Array;
}

export interface RefPermuteResult {
  permutedX: Float64Array;      // [R*D]
  R: number;
  tokensPerExpert: Int32Array;  // [E]
  expertOffsets: Int32Array;    // [E+1]
  rowMap: Int32Array;           // [T*k]
}

/**
 * Routing methods: 'greedy' softmax top-k (section 1); 'noaux_tc' sigmoid + groups by top-2 sum (section 2);
 * 'group_limited_greedy' softmax, groups scored by their best softmax score, experts of dropped groups scored 0
 * (DeepSeek-V2); 'sparsemixer' PhiMoE's two masked-softmax rounds (always 2 experts, relative threshold
 * 2 * sparsemixerEpsilon).
 */
export type RefTopkMethod = 'greedy'|'noaux_tc'|'group_limited_greedy'|'sparsemixer';

export interface RefMoeConfig {
  numExperts: number;
  topK: number;
  intermediateSize: number;
  topkMethod: 'greedy'|'noaux_tc';
  nGroup: number;
  topkGroup: number;
  routedScalingFactor: number;
  renormalize: boolean;
  useCorrectionBias: boolean;
  latentSize: number|null;
  withBias: boolean;
  probInAdvance: boolean;
  sharedExpertIntermediateSize: number;
  sharedExpertGate: boolean;
}

/**
 * RefMoeConfig plus the families' semantics that the layer does not have yet (moe-families.md); each new option
 * is optional and its default is the layer's current behaviour.
 */
export interface RefMoeOptions extends Omit<RefMoeConfig, 'topkMethod'> {
  topkMethod: RefTopkMethod;
  /** Logits += gateBias [E+Z] before any scoring (gpt-oss). */
  routerBias?: boolean;
  /** Renormalised weights are w / (sum + renormalizeEpsilon). Absent: each op's own rule (sections 1, 2). */
  renormalizeEpsilon?: number;
  /** 'sparsemixer' only: the relative mask threshold is 2 * sparsemixerEpsilon. */
  sparsemixerEpsilon?: number;
  /** Z identity experts after the E real ones: the router scores E+Z, an id >= E adds weight * x (LongCat). */
  zeroExperts?: number;
  /** 'input': each expert sees weight * x and its output is summed unweighted (Llama-4). Default 'output'. */
  routingWeightOn?: 'output'|'input';
  /**
   * 'swiglu': silu(gate) * up. 'clamped_swiglu' (gpt-oss): gate = min(gate, swigluLimit), up clamped to
   * [-swigluLimit, swigluLimit], (up + 1) * gate * sigmoid(swigluAlpha * gate).
   */
  activation?: 'swiglu'|'clamped_swiglu';
  swigluAlpha?: number;
  swigluLimit?: number;
}

export interface RefMoeWeights {
  gateWeight: ArrayLike<number>;                  // [H*(E+Z)]
  gateBias?: ArrayLike<number>;                   // [E+Z], routerBias
  gateCorrectionBias?: ArrayLike<number>;         // [E+Z]
  upGateProjWeight: ArrayLike<number>;            // [E*D*2I], gate columns first
  upGateProjBias?: ArrayLike<number>;             // [E*2I]
  downProjWeight: ArrayLike<number>;              // [E*I*D]
  downProjBias?: ArrayLike<number>;               // [E*D]
  fc1LatentProjWeight?: ArrayLike<number>;        // [H*L]
  fc2LatentProjWeight?: ArrayLike<number>;        // [L*H]
  sharedUpGateProjWeight?: ArrayLike<number>;     // [H*2S], gate columns first
  sharedDownProjWeight?: ArrayLike<number>;       // [S*H]
  sharedExpertGateWeight?: ArrayLike<number>;     // [H]
}

/**
 * Indices of `values` ordered by descending value; NaN ranks below everything (it never wins), equal values
 * (including NaN with NaN, -inf with -inf) go to the lower index.
 */
export function refRankDescending(values: ArrayLike<number>): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) idx.push(i);
  idx.sort((a, b) => {
    const va = values[a], vb = values[b];
    const aNaN = Number.isNaN(va), bNaN = Number.isNaN(vb);
    if (aNaN && bNaN) return a - b;
    if (aNaN) return 1;
    if (bNaN) return -1;
    if (va > vb) return -1;
    if (va < vb) return 1;
    return a - b;
  });
  return idx;
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

function silu(z: number): number {
  return z * sigmoid(z);
}

/** Section 1: softmax routing with optional selection-only bias. */
export function refMoeTopkSelect(
    logits: ArrayLike<number>, T: number, E: number, bias: ArrayLike<number>|null, topK: number,
    applyNormWeight: boolean): RefTopkResult {
  const ids = new Int32Array(T * topK);
  const weights = new Float64Array(T * topK);
  const probs = new Float64Array(T * E);
  const selectionScores = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    // Softmax with max subtraction. A NaN anywhere makes the row's max and sum NaN, so every p is NaN.
    let max = -Infinity;
    for (let e = 0; e < E; e++) {
      const v = logits[t * E + e];
      if (Number.isNaN(v)) max = NaN;
      else if (v > max) max = v;
    }
    let sum = 0;
    for (let e = 0; e < E; e++) sum += Math.exp(logits[t * E + e] - max);
    const s = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      const p = Math.exp(logits[t * E + e] - max) / sum;
      probs[t * E + e] = p;
      s[e] = bias ? p + bias[e] : p;
      selectionScores[t * E + e] = s[e];
    }
    const order = refRankDescending(s);
    let chosenSum = 0;
    for (let j = 0; j < topK; j++) {
      ids[t * topK + j] = order[j];
      weights[t * topK + j] = probs[t * E + order[j]];
      chosenSum += weights[t * topK + j];
    }
    if (applyNormWeight) {
      // Denominator clamped at 1e-12 (docs/semantics.md section 1): a bias may pick experts with p = 0.
      const denom = Number.isNaN(chosenSum) ? NaN : Math.max(chosenSum, 1e-12);
      for (let j = 0; j < topK; j++) weights[t * topK + j] /= denom;
    }
  }
  return {ids, weights, probs, selectionScores};
}

/** Section 2: DeepSeek-V3 noaux_tc grouped routing. */
export function refGetMoeScores(
    logits: ArrayLike<number>, T: number, E: number, nGroup: number, topkGroup: number, topK: number,
    rsf: number, bias: ArrayLike<number>|null, renormalize: boolean): RefScoresResult {
  if (E % nGroup !== 0) throw new Error(`refGetMoeScores: E=${E} not divisible by nGroup=${nGroup}`);
  const groupSize = E / nGroup;
  const scores = new Float64Array(T * E);
  const biased = new Float64Array(T * E);
  const groupScores = new Float64Array(T * nGroup);
  const weights = new Float64Array(T * topK);
  const ids = new Int32Array(T * topK);
  const fallback = new Uint8Array(T);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      scores[t * E + e] = sigmoid(logits[t * E + e]);
      biased[t * E + e] = scores[t * E + e] + (bias ? bias[e] : 0);
    }
    let anyFinite = false;
    for (let g = 0; g < nGroup; g++) {
      const members: number[] = [];
      for (let i = 0; i < groupSize; i++) members.push(biased[t * E + g * groupSize + i]);
      const order = refRankDescending(members);
      const gs = groupSize === 1 ? members[order[0]] : members[order[0]] + members[order[1]];
      groupScores[t * nGroup + g] = gs;
      if (Number.isFinite(gs)) anyFinite = true;
    }
    if (!anyFinite) {
      fallback[t] = 1;
      for (let j = 0; j < topK; j++) {
        ids[t * topK + j] = j;
        weights[t * topK + j] = 1 / topK;
      }
      continue;
    }
    const groupOrder = refRankDescending(groupScores.subarray(t * nGroup, (t + 1) * nGroup));
    const kept = new Array<boolean>(nGroup).fill(false);
    for (let i = 0; i < topkGroup; i++) kept[groupOrder[i]] = true;
    // Only experts of kept groups are candidates: a NaN there ranks last among them but is never beaten by an
    // expert of a dropped group (docs/semantics.md section 2).
    const members: number[] = [];
    for (let e = 0; e < E; e++) if (kept[Math.floor(e / groupSize)]) members.push(e);
    const order = refRankDescending(members.map(e => biased[t * E + e])).map(i => members[i]);
    let sum = 0;
    for (let j = 0; j < topK; j++) {
      ids[t * topK + j] = order[j];
      sum += scores[t * E + order[j]];
    }
    for (let j = 0; j < topK; j++) {
      let w = scores[t * E + order[j]];
      if (renormalize) w = w / (sum + 1e-20);
      weights[t * topK + j] = w * rsf;
    }
  }
  return {scores, weights, ids, biased, groupScores, fallback};
}

function softmaxRow(v: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) max = Number.isNaN(v[i]) ? NaN : Math.max(max, v[i]);
  const out = new Float64Array(v.length);
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (out[i] = Math.exp(v[i] - max));
  for (let i = 0; i < v.length; i++) out[i] /= sum;
  return out;
}

/**
 * DeepSeek-V2 group_limited_greedy: softmax; a group's score is its best softmax score; the topkGroup best
 * groups are kept and every expert of the others scores 0 (not -inf); top-k of those scores. Weights are the
 * chosen scores (so a dropped expert chosen because topK exceeds the kept experts weighs 0), not renormalised.
 */
export function refGroupLimitedGreedy(
    logits: ArrayLike<number>, T: number, E: number, nGroup: number, topkGroup: number,
    topK: number): {ids: Int32Array, weights: Float64Array, probs: Float64Array} {
  if (E % nGroup !== 0) throw new Error(`refGroupLimitedGreedy: E=${E} not divisible by nGroup=${nGroup}`);
  const size = E / nGroup;
  const ids = new Int32Array(T * topK), weights = new Float64Array(T * topK), probs = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    const p = softmaxRow(Array.prototype.slice.call(logits, t * E, (t + 1) * E) as number[]);
    probs.set(p, t * E);
    const groupScores = Array.from({length: nGroup}, (_, g) => Math.max(...p.subarray(g * size, (g + 1) * size)));
    const kept = new Set(refRankDescending(groupScores).slice(0, topkGroup));
    const masked = Float64Array.from(p, (v, e) => (kept.has(Math.floor(e / size)) ? v : 0));
    const order = refRankDescending(masked);
    for (let j = 0; j < topK; j++) {
      ids[t * topK + j] = order[j];
      weights[t * topK + j] = masked[order[j]];
    }
  }
  return {ids, weights, probs};
}

/**
 * PhiMoE sparsemixer (inference form): exactly two experts. Round r takes m = the max of the still-eligible
 * logits (expert 1 is ineligible in round 2), its expert e, masks to -inf every eligible logit l_j with
 * (m - l_j) / max(|l_j|, m) > 2 * eps, and weighs e by the softmax of what is left. Not renormalised.
 */
export function refSparsemixer(
    logits: ArrayLike<number>, T: number, E: number, eps: number): {ids: Int32Array, weights: Float64Array} {
  const ids = new Int32Array(T * 2), weights = new Float64Array(T * 2);
  for (let t = 0; t < T; t++) {
    const l = Array.prototype.slice.call(logits, t * E, (t + 1) * E) as number[];
    const eligible = l.slice();
    for (let round = 0; round < 2; round++) {
      const e = refRankDescending(eligible)[0];
      const m = eligible[e];
      const masked = eligible.map((v, j) => ((m - l[j]) / Math.max(Math.abs(l[j]), m) > 2 * eps ? -Infinity : v));
      ids[t * 2 + round] = e;
      weights[t * 2 + round] = softmaxRow(masked)[e];
      eligible[e] = -Infinity;
    }
  }
  return {ids, weights};
}

/**
 * The routing of a FusedMoE config over logits [T, E+Z] (Z = zeroExperts): ids [T*k] in [0, E+Z) and weights
 * [T*k], multiplied by routedScalingFactor. 'greedy' and 'noaux_tc' renormalise as their ops do (sections 1, 2)
 * unless renormalizeEpsilon is given; then, like the other methods, w / (sum + renormalizeEpsilon (default 0)).
 */
export function refRoute(logits: ArrayLike<number>, T: number, cfg: RefMoeOptions,
    selectionBias: ArrayLike<number>|null): {ids: Int32Array, weights: Float64Array} {
  const N = cfg.numExperts + (cfg.zeroExperts ?? 0), k = cfg.topK, rsf = cfg.routedScalingFactor;
  const opRenorm = cfg.renormalizeEpsilon === undefined;
  let ids: Int32Array, weights: Float64Array;
  let final: Uint8Array|null = null;
  switch (cfg.topkMethod) {
    case 'greedy':
      ({ids, weights} = refMoeTopkSelect(logits, T, N, selectionBias, k, opRenorm && cfg.renormalize));
      break;
    case 'noaux_tc': {
      const r = refGetMoeScores(logits, T, N, cfg.nGroup, cfg.topkGroup, k, opRenorm ? rsf : 1, selectionBias,
          opRenorm && cfg.renormalize);
      if (opRenorm) return {ids: r.ids, weights: r.weights};
      // The all-groups-non-finite fallback's uniform weights are final (section 2).
      ({ids, weights, fallback: final} = r);
      break;
    }
    case 'group_limited_greedy':
      if (selectionBias) throw new Error('refRoute: group_limited_greedy has no selection bias');
      ({ids, weights} = refGroupLimitedGreedy(logits, T, N, cfg.nGroup, cfg.topkGroup, k));
      break;
    case 'sparsemixer':
      if (k !== 2) throw new Error(`refRoute: sparsemixer always picks 2 experts, got topK ${k}`);
      if (selectionBias) throw new Error('refRoute: sparsemixer has no selection bias');
      ({ids, weights} = refSparsemixer(logits, T, N, cfg.sparsemixerEpsilon ?? 0));
      break;
  }
  const renormalize = cfg.renormalize && !(opRenorm && cfg.topkMethod === 'greedy');
  const eps = cfg.renormalizeEpsilon ?? 0;
  for (let t = 0; t < T; t++) {
    if (final?.[t]) continue;
    let sum = 0;
    for (let j = 0; j < k; j++) sum += weights[t * k + j];
    for (let j = 0; j < k; j++) {
      const w = renormalize ? weights[t * k + j] / (sum + eps) : weights[t * k + j];
      weights[t * k + j] = w * rsf;
    }
  }
  return {ids, weights};
}

/** The expert activation of section 5 (or gpt-oss's clamped variant, see RefMoeOptions.activation). */
export function refActivation(gate: number, up: number, cfg: Pick<RefMoeOptions, 'activation'|'swigluAlpha'|'swigluLimit'>):
    number {
  if ((cfg.activation ?? 'swiglu') === 'swiglu') return silu(gate) * up;
  const limit = cfg.swigluLimit ?? 7, alpha = cfg.swigluAlpha ?? 1.702;
  const g = Math.min(gate, limit), u = Math.min(Math.max(up, -limit), limit);
  return (u + 1) * g * sigmoid(alpha * g);
}

/** Static row count of moePermute's outputs (section 3). */
export function refPermuteRows(T: number, k: number, E: number, alignment: number): number {
  return alignment === 1 ? T * k : T * k + E * (alignment - 1);
}

/** Section 3: stable counting-sort dispatch by expert, segments padded to `alignment`. */
export function refMoePermute(
    x: ArrayLike<number>, T: number, D: number, ids: ArrayLike<number>, k: number, E: number,
    alignment: number): RefPermuteResult {
  const R = refPermuteRows(T, k, E, alignment);
  const tokensPerExpert = new Int32Array(E);
  for (let i = 0; i < T * k; i++) {
    const e = ids[i];
    if (!Number.isInteger(e) || e < 0 || e >= E) throw new Error(`refMoePermute: id ${e} outside [0, ${E})`);
    tokensPerExpert[e]++;
  }
  const expertOffsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) {
    const padded = Math.ceil(tokensPerExpert[e] / alignment) * alignment;
    expertOffsets[e + 1] = expertOffsets[e] + padded;
  }
  const permutedX = new Float64Array(R * D);
  const rowMap = new Int32Array(T * k);
  // Rows of expert e in ascending token order (then ascending slot, which only matters for duplicate ids).
  for (let e = 0; e < E; e++) {
    let row = expertOffsets[e];
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < k; j++) {
        if (ids[t * k + j] !== e) continue;
        rowMap[t * k + j] = row;
        for (let d = 0; d < D; d++) permutedX[row * D + d] = x[t * D + d];
        row++;
      }
    }
  }
  return {permutedX, R, tokensPerExpert, expertOffsets, rowMap};
}

/** Offsets [E+1] from counts [E] (the unpadded segment form batchedGemm also accepts). */
export function refOffsetsFromCounts(counts: ArrayLike<number>): Int32Array {
  const offsets = new Int32Array(counts.length + 1);
  for (let e = 0; e < counts.length; e++) offsets[e + 1] = offsets[e] + counts[e];
  return offsets;
}

/**
 * Section 4, invalid segments: the segment bounds [E+1] every device path uses for any segments tensor of R rows.
 * Offsets: b[0] = clamp(off[0], 0, R), b[e] = clamp(off[e], b[e-1], R). Counts: b[0] = 0, b[e+1] = b[e] +
 * clamp(count[e], 0, R - b[e]). Float64 arithmetic, so no int32 wrap can hide here. Valid segments map to their
 * offsets unchanged.
 */
export function refSegmentBounds(segments: ArrayLike<number>, areOffsets: boolean, R: number): number[] {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  if (areOffsets) {
    const b: number[] = [];
    for (let e = 0; e < segments.length; e++) b.push(clamp(segments[e], e === 0 ? 0 : b[e - 1], R));
    return b;
  }
  const b = [0];
  for (let e = 0; e < segments.length; e++) b.push(b[e] + clamp(segments[e], 0, R - b[e]));
  return b;
}

/** Section 4: grouped GEMM over contiguous row segments; rows in no segment are zero. */
export function refBatchedGemm(
    lhs: ArrayLike<number>, R: number, K: number, rhs: ArrayLike<number>, E: number, N: number,
    expertOffsets: ArrayLike<number>, transposeRhs: boolean, bias: ArrayLike<number>|null): Float64Array {
  const out = new Float64Array(R * N);
  for (let e = 0; e < E; e++) {
    const start = expertOffsets[e];
    const end = Math.min(expertOffsets[e + 1], R);
    for (let r = start; r < end; r++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let kk = 0; kk < K; kk++) {
          const w = transposeRhs ? rhs[(e * N + n) * K + kk] : rhs[(e * K + kk) * N + n];
          acc += lhs[r * K + kk] * w;
        }
        if (bias) acc += bias[e * N + n];
        out[r * N + n] = acc;
      }
    }
  }
  return out;
}

/** Section 4a: out[e][kk][nn] = sum over the rows r of segment e of lhs[r][kk] * dy[r][nn]; [E,K,N], E = offsets.length - 1. */
export function refBatchedGemmWeightGrad(
    lhs: ArrayLike<number>, dy: ArrayLike<number>, K: number, N: number, offsets: ArrayLike<number>): Float64Array {
  const E = offsets.length - 1;
  const out = new Float64Array(E * K * N);
  for (let e = 0; e < E; e++) {
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      for (let kk = 0; kk < K; kk++) {
        for (let nn = 0; nn < N; nn++) out[(e * K + kk) * N + nn] += lhs[r * K + kk] * dy[r * N + nn];
      }
    }
  }
  return out;
}

/** Section 5: out[r,i] = silu(gate) * up * scale[r] (or the activation of cfg, see refActivation). */
export function refSwigluScale(
    x: ArrayLike<number>, R: number, I: number, scale: ArrayLike<number>|null,
    cfg: Pick<RefMoeOptions, 'activation'|'swigluAlpha'|'swigluLimit'> = {}): Float64Array {
  const out = new Float64Array(R * I);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < I; i++) {
      const gate = x[r * 2 * I + i];
      const up = x[r * 2 * I + I + i];
      out[r * I + i] = refActivation(gate, up, cfg) * (scale ? scale[r] : 1);
    }
  }
  return out;
}

/** Section 6: weighted gather-sum of each token's rows; the bias is always weighted. */
export function refMoeCombine(
    y: ArrayLike<number>, R: number, D: number, rowMap: ArrayLike<number>, weights: ArrayLike<number>,
    ids: ArrayLike<number>, T: number, k: number, bias: ArrayLike<number>|null,
    weightsApplied: boolean): Float64Array {
  const out = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const row = rowMap[t * k + j];
      const w = weights[t * k + j];
      const e = ids[t * k + j];
      if (row < 0 || row >= R) throw new Error(`refMoeCombine: row ${row} outside [0, ${R})`);
      for (let d = 0; d < D; d++) {
        const yv = y[row * D + d];
        let v = weightsApplied ? yv : w * yv;
        if (bias) v += w * bias[e * D + d];
        out[t * D + d] += v;
      }
    }
  }
  return out;
}

/** x [M,K] @ w [K,N]. */
function matmul(x: ArrayLike<number>, M: number, K: number, w: ArrayLike<number>, N: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let kk = 0; kk < K; kk++) acc += x[m * K + kk] * w[kk * N + n];
      out[m * N + n] = acc;
    }
  }
  return out;
}

/**
 * Section 7: the FusedMoE forward for x [T,H], computed token by token (deliberately not by chaining the
 * reference ops above, so this also checks that the op chain composes to the doc's function).
 * Routing (refRoute): 'greedy' -> softmax top-k with the gate correction bias (if useCorrectionBias) as
 * selection bias; 'noaux_tc' -> getMoeScores; the other methods and options as RefMoeOptions says. The weights
 * are renormalised when `renormalize` and always multiplied by routedScalingFactor (the layer requires 1 with
 * 'greedy', so this is the doc's function there too).
 */
export function refFusedMoE(
    x: ArrayLike<number>, T: number, H: number, w: RefMoeWeights, cfg: RefMoeOptions): Float64Array {
  const E = cfg.numExperts, k = cfg.topK, I = cfg.intermediateSize;
  const N = E + (cfg.zeroExperts ?? 0);
  const onInput = (cfg.routingWeightOn ?? 'output') === 'input';
  const corrBias = cfg.useCorrectionBias ? (w.gateCorrectionBias ?? null) : null;
  if (cfg.useCorrectionBias && !corrBias) throw new Error('refFusedMoE: useCorrectionBias without gateCorrectionBias');
  if (cfg.routerBias && !w.gateBias) throw new Error('refFusedMoE: routerBias without gateBias');
  if ((cfg.zeroExperts ?? 0) > 0 && cfg.latentSize !== null) throw new Error('refFusedMoE: zero experts in latent mode');
  if (onInput && (cfg.probInAdvance || cfg.withBias)) {
    throw new Error('refFusedMoE: routingWeightOn input with probInAdvance or expert biases is not defined');
  }

  // 1-2. Routing always sees the original x.
  const logits = matmul(x, T, H, w.gateWeight, N);
  if (cfg.routerBias) for (let i = 0; i < T * N; i++) logits[i] += w.gateBias![i % N];
  const {ids, weights} = refRoute(logits, T, cfg, corrBias);

  // 3. Latent mode: experts run in L.
  const latent = cfg.latentSize !== null;
  const D = latent ? cfg.latentSize! : H;
  let xl: ArrayLike<number> = x;
  if (latent) {
    if (!w.fc1LatentProjWeight || !w.fc2LatentProjWeight) throw new Error('refFusedMoE: latent weights missing');
    xl = matmul(x, T, H, w.fc1LatentProjWeight, D);
  }

  // 4. Experts, per (token, slot). An id >= E is an identity expert: weight * x, no FFN.
  const expertOut = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      const wt = weights[t * k + j];
      if (e >= E) {
        for (let d = 0; d < D; d++) expertOut[t * D + d] += wt * xl[t * D + d];
        continue;
      }
      const inScale = onInput ? wt : 1;
      const act = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        let gate = 0, up = 0;
        for (let d = 0; d < D; d++) {
          const xv = inScale * xl[t * D + d];
          gate += xv * w.upGateProjWeight[(e * D + d) * 2 * I + i];
          up += xv * w.upGateProjWeight[(e * D + d) * 2 * I + I + i];
        }
        if (cfg.withBias) {
          gate += w.upGateProjBias![e * 2 * I + i];
          up += w.upGateProjBias![e * 2 * I + I + i];
        }
        act[i] = refActivation(gate, up, cfg) * (cfg.probInAdvance ? wt : 1);
      }
      for (let d = 0; d < D; d++) {
        let o = 0;
        for (let i = 0; i < I; i++) o += act[i] * w.downProjWeight[(e * I + i) * D + d];
        // probInAdvance already scaled the activations, 'input' the expert's input; the bias is weighted in both
        // output modes.
        let v = cfg.probInAdvance || onInput ? o : wt * o;
        if (cfg.withBias) v += wt * w.downProjBias![e * D + d];
        expertOut[t * D + d] += v;
      }
    }
  }

  // 5. Back to H in latent mode.
  const out = latent ? matmul(expertOut, T, D, w.fc2LatentProjWeight!, H) : expertOut;

  // 6. Shared experts on the full-width x, optionally gated by sigmoid(x @ sharedGate).
  const S = cfg.sharedExpertIntermediateSize;
  if (S > 0) {
    if (!w.sharedUpGateProjWeight || !w.sharedDownProjWeight) throw new Error('refFusedMoE: shared weights missing');
    if (cfg.sharedExpertGate && !w.sharedExpertGateWeight) throw new Error('refFusedMoE: shared gate weight missing');
    for (let t = 0; t < T; t++) {
      const act = new Float64Array(S);
      for (let i = 0; i < S; i++) {
        let gate = 0, up = 0;
        for (let h = 0; h < H; h++) {
          gate += x[t * H + h] * w.sharedUpGateProjWeight[h * 2 * S + i];
          up += x[t * H + h] * w.sharedUpGateProjWeight[h * 2 * S + S + i];
        }
        act[i] = silu(gate) * up;
      }
      let g = 1;
      if (cfg.sharedExpertGate) {
        let z = 0;
        for (let h = 0; h < H; h++) z += x[t * H + h] * w.sharedExpertGateWeight![h];
        g = sigmoid(z);
      }
      for (let h = 0; h < H; h++) {
        let o = 0;
        for (let i = 0; i < S; i++) o += act[i] * w.sharedDownProjWeight[i * H + h];
        out[t * H + h] += g * o;
      }
    }
  }
  return out;
}
