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

export interface RefMoeWeights {
  gateWeight: ArrayLike<number>;                  // [H*E]
  gateCorrectionBias?: ArrayLike<number>;         // [E]
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
      // Denominator clamped at 1e-12 (docs/semantics-edge-cases.md): a bias may pick experts with p = 0.
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
    // expert of a dropped group (docs/semantics-edge-cases.md).
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

/** Section 5: out[r,i] = silu(gate) * up * scale[r]. */
export function refSwigluScale(
    x: ArrayLike<number>, R: number, I: number, scale: ArrayLike<number>|null): Float64Array {
  const out = new Float64Array(R * I);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < I; i++) {
      const gate = x[r * 2 * I + i];
      const up = x[r * 2 * I + I + i];
      out[r * I + i] = silu(gate) * up * (scale ? scale[r] : 1);
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
 * Routing: 'greedy' -> softmax top-k with applyNormWeight = renormalize and the gate correction bias (if
 * useCorrectionBias) as selection bias; routedScalingFactor is NOT applied on this path (the doc applies rsf
 * only inside getMoeScores). 'noaux_tc' -> getMoeScores with the correction bias as eScoreCorrectionBias.
 */
export function refFusedMoE(
    x: ArrayLike<number>, T: number, H: number, w: RefMoeWeights, cfg: RefMoeConfig): Float64Array {
  const E = cfg.numExperts, k = cfg.topK, I = cfg.intermediateSize;
  const corrBias = cfg.useCorrectionBias ? (w.gateCorrectionBias ?? null) : null;
  if (cfg.useCorrectionBias && !corrBias) throw new Error('refFusedMoE: useCorrectionBias without gateCorrectionBias');

  // 1-2. Routing always sees the original x.
  const logits = matmul(x, T, H, w.gateWeight, E);
  let ids: Int32Array, weights: Float64Array;
  if (cfg.topkMethod === 'greedy') {
    ({ids, weights} = refMoeTopkSelect(logits, T, E, corrBias, k, cfg.renormalize));
  } else {
    ({ids, weights} = refGetMoeScores(
         logits, T, E, cfg.nGroup, cfg.topkGroup, k, cfg.routedScalingFactor, corrBias, cfg.renormalize));
  }

  // 3. Latent mode: experts run in L.
  const latent = cfg.latentSize !== null;
  const D = latent ? cfg.latentSize! : H;
  let xl: ArrayLike<number> = x;
  if (latent) {
    if (!w.fc1LatentProjWeight || !w.fc2LatentProjWeight) throw new Error('refFusedMoE: latent weights missing');
    xl = matmul(x, T, H, w.fc1LatentProjWeight, D);
  }

  // 4. Experts, per (token, slot).
  const expertOut = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      const wt = weights[t * k + j];
      const act = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        let gate = 0, up = 0;
        for (let d = 0; d < D; d++) {
          const xv = xl[t * D + d];
          gate += xv * w.upGateProjWeight[(e * D + d) * 2 * I + i];
          up += xv * w.upGateProjWeight[(e * D + d) * 2 * I + I + i];
        }
        if (cfg.withBias) {
          gate += w.upGateProjBias![e * 2 * I + i];
          up += w.upGateProjBias![e * 2 * I + I + i];
        }
        act[i] = silu(gate) * up * (cfg.probInAdvance ? wt : 1);
      }
      for (let d = 0; d < D; d++) {
        let o = 0;
        for (let i = 0; i < I; i++) o += act[i] * w.downProjWeight[(e * I + i) * D + d];
        // probInAdvance already scaled the activations; the bias is weighted in both modes.
        let v = cfg.probInAdvance ? o : wt * o;
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
