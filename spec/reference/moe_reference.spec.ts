// Hand-worked cases for the float64 reference itself: if the reference is wrong, every conformance test is.
import {refActivation, refBatchedGemm, refFusedMoE, refGetMoeScores, refGroupLimitedGreedy, refMoeCombine, refMoePermute, refMoeTopkSelect, refRankDescending, refRoute, refSparsemixer, refSwigluScale} from './moe_reference.js';

const sig = (z: number) => 1 / (1 + Math.exp(-z));

describe('float64 reference', () => {
  it('ranks descending, ties to the lower index, NaN last', () => {
    expect(refRankDescending([1, NaN, 3, 3, -Infinity, NaN])).toEqual([2, 3, 0, 4, 1, 5]);
  });

  it('moeTopkSelect: softmax, bias only for choosing, renormalised weights', () => {
    const logits = [0, Math.log(2), Math.log(3), Math.log(4)];  // p = [1,2,3,4]/10
    const plain = refMoeTopkSelect(logits, 1, 4, null, 2, false);
    expect(Array.from(plain.ids)).toEqual([3, 2]);
    expect(plain.weights[0]).toBeCloseTo(0.4, 14);
    expect(plain.weights[1]).toBeCloseTo(0.3, 14);
    const biased = refMoeTopkSelect(logits, 1, 4, [0.5, 0, 0, 0], 2, true);
    expect(Array.from(biased.ids)).toEqual([0, 3]);  // 0.1 + 0.5 beats 0.4
    expect(biased.weights[0]).toBeCloseTo(0.1 / 0.5, 14);
    expect(biased.weights[1]).toBeCloseTo(0.4 / 0.5, 14);
    const tie = refMoeTopkSelect([1, 2, 2, 1], 1, 4, null, 3, false);
    expect(Array.from(tie.ids)).toEqual([1, 2, 0]);
    const nanBias = refMoeTopkSelect(logits, 1, 4, [0, 0, 0, NaN], 1, true);
    expect(Array.from(nanBias.ids)).toEqual([2]);
  });

  it('getMoeScores: group scores from the top two, kept groups, rsf, fallback', () => {
    // E=4, G=2: groups {0,1}, {2,3}. Keep 1 group.
    const logits = [3, -3, 1, 1];
    const r = refGetMoeScores(logits, 1, 4, 2, 1, 2, 2.5, null, true);
    // group0: sig(3)+sig(-3) = 1; group1: 2 sig(1) = 1.462 -> group 1 kept.
    expect(r.groupScores[0]).toBeCloseTo(1, 14);
    expect(Array.from(r.ids)).toEqual([2, 3]);
    expect(r.weights[0]).toBeCloseTo(1.25, 12);
    expect(r.scores[0]).toBeCloseTo(sig(3), 14);
    const noRenorm = refGetMoeScores(logits, 1, 4, 2, 2, 1, 2, null, false);
    expect(Array.from(noRenorm.ids)).toEqual([0]);
    expect(noRenorm.weights[0]).toBeCloseTo(2 * sig(3), 14);
    // The bias steers the choice, the weight stays un-biased.
    const b = refGetMoeScores(logits, 1, 4, 4, 4, 1, 1, [0, 1, 0, 0], false);
    expect(Array.from(b.ids)).toEqual([1]);
    expect(b.weights[0]).toBeCloseTo(sig(-3), 14);
    const fb = refGetMoeScores([NaN, NaN, NaN, NaN], 1, 4, 2, 1, 2, 3, null, true);
    expect(Array.from(fb.ids)).toEqual([0, 1]);
    expect(Array.from(fb.weights)).toEqual([0.5, 0.5]);
  });

  it('moePermute: stable counting sort, padded segments, zero padding', () => {
    const x = [10, 11, 12];  // T=3, D=1
    const ids = [2, 0, 0, 2, 2, 1];  // k=2
    const a1 = refMoePermute(x, 3, 1, ids, 2, 3, 1);
    expect(a1.R).toBe(6);
    expect(Array.from(a1.tokensPerExpert)).toEqual([2, 1, 3]);
    expect(Array.from(a1.expertOffsets)).toEqual([0, 2, 3, 6]);
    expect(Array.from(a1.permutedX)).toEqual([10, 11, 12, 10, 11, 12]);
    expect(Array.from(a1.rowMap)).toEqual([3, 0, 1, 4, 5, 2]);
    const a4 = refMoePermute(x, 3, 1, ids, 2, 3, 4);
    expect(a4.R).toBe(6 + 9);
    expect(Array.from(a4.expertOffsets)).toEqual([0, 4, 8, 12]);
    expect(Array.from(a4.permutedX)).toEqual([10, 11, 0, 0, 12, 0, 0, 0, 10, 11, 12, 0, 0, 0, 0]);
    expect(Array.from(a4.rowMap)).toEqual([8, 0, 1, 9, 10, 4]);
    expect(() => refMoePermute(x, 3, 1, [0, 3, 0, 0, 0, 0], 2, 3, 1)).toThrowError(/outside/);
  });

  it('batchedGemm: per-segment product, bias, transposed rhs, rows outside segments zero', () => {
    // R=4, K=2, N=1, E=2; segments [0,1) and [1,3); row 3 in none.
    const lhs = [1, 2, 3, 4, 5, 6, 7, 8];
    const rhs = [1, 1, 2, -1];  // e0: [1;1], e1: [2;-1]
    const out = refBatchedGemm(lhs, 4, 2, rhs, 2, 1, [0, 1, 3], false, [10, 20]);
    expect(Array.from(out)).toEqual([13, 22, 24, 0]);
    const rhsT = [1, 0, 0, 1, 1, 1, 2, 2];  // [E=2,N=2,K=2]
    const outT = refBatchedGemm([1, 2, 3, 4], 2, 2, rhsT, 2, 2, [0, 1, 2], true, null);
    expect(Array.from(outT)).toEqual([1, 2, 7, 14]);
  });

  it('fusedSwigluScale and moeCombine', () => {
    const s = refSwigluScale([1, 2, 3, 4], 1, 2, [0.5]);
    expect(s[0]).toBeCloseTo(sig(1) * 3 * 0.5, 14);
    expect(s[1]).toBeCloseTo(2 * sig(2) * 4 * 0.5, 14);
    // T=1, k=2, D=1, rows 1 and 0, bias weighted in both modes.
    const y = [5, 7];
    const c = refMoeCombine(y, 2, 1, [1, 0], [0.25, 0.75], [0, 1], 1, 2, [100, 200], false);
    expect(c[0]).toBeCloseTo(0.25 * 7 + 0.75 * 5 + 0.25 * 100 + 0.75 * 200, 12);
    const ca = refMoeCombine(y, 2, 1, [1, 0], [0.25, 0.75], [0, 1], 1, 2, [100, 200], true);
    expect(ca[0]).toBeCloseTo(7 + 5 + 0.25 * 100 + 0.75 * 200, 12);
  });

  it('fusedMoE equals the op chain, probInAdvance changes nothing, shared gate adds', () => {
    // T=2, H=2, E=2, k=1, I=1, greedy without renorm.
    const x = [1, 0, 0, 1];
    const gateWeight = [2, 0, 0, 2];  // token0 -> expert0, token1 -> expert1
    const upGate = [1, 1, 0, 0, 0, 0, 1, 2];  // [E=2, D=2, 2I=2]
    const down = [1, 2, 3, 4];  // [E=2, I=1, D=2]
    const cfg = {numExperts: 2, topK: 1, intermediateSize: 1, topkMethod: 'greedy' as const, nGroup: 1, topkGroup: 1,
      routedScalingFactor: 1, renormalize: false, useCorrectionBias: false, latentSize: null, withBias: true,
      probInAdvance: false, sharedExpertIntermediateSize: 0, sharedExpertGate: false};
    const w = {gateWeight, upGateProjWeight: upGate, downProjWeight: down, upGateProjBias: [0, 0, 0, 0],
      downProjBias: [1, 1, 1, 1]};
    const p = Math.exp(2) / (Math.exp(2) + 1);
    const a0 = sig(1) * 1, a1 = sig(1) * 2;
    const out = refFusedMoE(x, 2, 2, w, cfg);
    expect(out[0]).toBeCloseTo(p * (a0 * 1 + 1), 12);
    expect(out[1]).toBeCloseTo(p * (a0 * 2 + 1), 12);
    expect(out[2]).toBeCloseTo(p * (a1 * 3 + 1), 12);
    expect(out[3]).toBeCloseTo(p * (a1 * 4 + 1), 12);
    const inAdvance = refFusedMoE(x, 2, 2, w, {...cfg, probInAdvance: true});
    for (let i = 0; i < 4; i++) expect(inAdvance[i]).toBeCloseTo(out[i], 12);
    const shared = refFusedMoE(x, 2, 2, {...w, sharedUpGateProjWeight: [1, 1, 0, 0], sharedDownProjWeight: [1, 0],
      sharedExpertGateWeight: [1, 0]}, {...cfg, sharedExpertIntermediateSize: 1, sharedExpertGate: true});
    expect(shared[0]).toBeCloseTo(out[0] + sig(1) * sig(1) * 1, 12);
    expect(shared[1]).toBeCloseTo(out[1], 12);
    expect(shared[2]).toBeCloseTo(out[2] + sig(0) * 0, 12);
    // Latent: identity fc1/fc2 leaves the result unchanged.
    const latent = refFusedMoE(x, 2, 2, {...w, fc1LatentProjWeight: [1, 0, 0, 1], fc2LatentProjWeight: [1, 0, 0, 1]},
        {...cfg, latentSize: 2});
    for (let i = 0; i < 4; i++) expect(latent[i]).toBeCloseTo(out[i], 12);
  });
});

describe('float64 reference: refFusedMoE agrees with the chain of reference ops', () => {
  // Two formulations of section 7 (token-by-token vs permute/gemm/swiglu/gemm/combine) must agree; a slip in
  // either (layouts, probInAdvance, bias weighting, latent or shared paths) shows up as a difference.
  const matmul = (a: ArrayLike<number>, M: number, K: number, b: ArrayLike<number>, N: number) => {
    const out = new Float64Array(M * N);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
      out[m * N + n] = s;
    }
    return out;
  };
  let seed = 1;
  const rand = () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  };
  const arr = (n: number) => Float64Array.from({length: n}, () => rand());

  for (const variant of ['greedy', 'greedy bias probInAdvance', 'noaux_tc latent', 'noaux_tc shared gate',
    'greedy latent shared probInAdvance']) {
    it(variant, () => {
      const T = 5, H = 6, E = 8, k = 3, I = 4, L = 5, S = 3;
      const latent = variant.includes('latent');
      const withBias = variant.includes('bias') || variant.includes('noaux');
      const cfg = {
        numExperts: E, topK: k, intermediateSize: I, topkMethod: (variant.startsWith('greedy') ? 'greedy' : 'noaux_tc') as
            'greedy' | 'noaux_tc', nGroup: 4, topkGroup: 2, routedScalingFactor: 2.5, renormalize: true,
        useCorrectionBias: true, latentSize: latent ? L : null, withBias, probInAdvance: variant.includes('probInAdvance'),
        sharedExpertIntermediateSize: variant.includes('shared') ? S : 0, sharedExpertGate: variant.includes('gate'),
      };
      const D = latent ? L : H;
      const w = {
        gateWeight: arr(H * E), gateCorrectionBias: arr(E), upGateProjWeight: arr(E * D * 2 * I),
        upGateProjBias: arr(E * 2 * I), downProjWeight: arr(E * I * D), downProjBias: arr(E * D),
        fc1LatentProjWeight: arr(H * L), fc2LatentProjWeight: arr(L * H), sharedUpGateProjWeight: arr(H * 2 * S),
        sharedDownProjWeight: arr(S * H), sharedExpertGateWeight: arr(H),
      };
      const x = arr(T * H);
      const got = refFusedMoE(x, T, H, w, cfg);

      const logits = matmul(x, T, H, w.gateWeight, E);
      const route = cfg.topkMethod === 'greedy' ?
          refMoeTopkSelect(logits, T, E, w.gateCorrectionBias, k, cfg.renormalize) :
          refGetMoeScores(logits, T, E, cfg.nGroup, cfg.topkGroup, k, cfg.routedScalingFactor, w.gateCorrectionBias,
              cfg.renormalize);
      // refFusedMoE scales every method's weights (the families' softmax rsf); moeTopkSelect has no rsf.
      if (cfg.topkMethod === 'greedy') route.weights.forEach((v, i) => (route.weights[i] = v * cfg.routedScalingFactor));
      const xl = latent ? matmul(x, T, H, w.fc1LatentProjWeight, L) : x;
      const p = refMoePermute(xl, T, D, route.ids, k, E, 4);
      const h = refBatchedGemm(p.permutedX, p.R, D, w.upGateProjWeight, E, 2 * I, p.expertOffsets, false,
          withBias ? w.upGateProjBias : null);
      let scale: Float64Array | null = null;
      if (cfg.probInAdvance) {
        scale = new Float64Array(p.R);
        for (let i = 0; i < T * k; i++) scale[p.rowMap[i]] = route.weights[i];
      }
      const a = refSwigluScale(h, p.R, I, scale);
      const y = refBatchedGemm(a, p.R, I, w.downProjWeight, E, D, p.expertOffsets, false, null);
      const combined = refMoeCombine(y, p.R, D, p.rowMap, route.weights, route.ids, T, k,
          withBias ? w.downProjBias : null, cfg.probInAdvance);
      const want = latent ? matmul(combined, T, L, w.fc2LatentProjWeight, H) : combined;
      if (cfg.sharedExpertIntermediateSize > 0) {
        const sh = refSwigluScale(matmul(x, T, H, w.sharedUpGateProjWeight, 2 * S), T, S, null);
        const so = matmul(sh, T, S, w.sharedDownProjWeight, H);
        const g = matmul(x, T, H, w.sharedExpertGateWeight, 1);
        for (let t = 0; t < T; t++) for (let hh = 0; hh < H; hh++) {
          want[t * H + hh] += (cfg.sharedExpertGate ? sig(g[t]) : 1) * so[t * H + hh];
        }
      }
      for (let i = 0; i < T * H; i++) expect(got[i]).toBeCloseTo(want[i], 12);
    });
  }
});

describe('float64 reference: the families\' semantics (moe-families.md)', () => {
  const base = {numExperts: 4, topK: 2, intermediateSize: 1, nGroup: 1, topkGroup: 1, routedScalingFactor: 1,
    renormalize: false, useCorrectionBias: false, latentSize: null, withBias: false, probInAdvance: false,
    sharedExpertIntermediateSize: 0, sharedExpertGate: false};
  const logP = [0.1, 0.2, 0.3, 0.4].map(Math.log);  // softmax = [0.1, 0.2, 0.3, 0.4]

  it('sparsemixer: two masked-softmax rounds, relative threshold, no renormalisation', () => {
    // eps 0.05: round 1 keeps 1.9 ((2 - 1.9) / 2 = 0.05 <= 0.1), masks 0 and -1; round 2 keeps only 1.9.
    const r = refSparsemixer([2, 1.9, 0, -1], 1, 4, 0.05);
    expect(Array.from(r.ids)).toEqual([0, 1]);
    expect(r.weights[0]).toBeCloseTo(Math.exp(2) / (Math.exp(2) + Math.exp(1.9)), 14);
    expect(r.weights[1]).toBe(1);
    // A wide threshold keeps everything: plain softmaxes, the second without expert 0.
    const wide = refSparsemixer([2, 1.9, 0, -1], 1, 4, 10);
    const z = Math.exp(2) + Math.exp(1.9) + 1 + Math.exp(-1);
    expect(wide.weights[0]).toBeCloseTo(Math.exp(2) / z, 14);
    expect(wide.weights[1]).toBeCloseTo(Math.exp(1.9) / (z - Math.exp(2)), 14);
  });

  it('group_limited_greedy: group max, dropped groups score 0, rsf after', () => {
    const r = refGroupLimitedGreedy(logP, 1, 4, 2, 1, 3);
    expect(Array.from(r.ids)).toEqual([3, 2, 0]);  // group {2,3} kept; the third pick is a dropped 0 (lowest index)
    expect(Array.from(r.weights).map(v => +v.toFixed(12))).toEqual([0.4, 0.3, 0]);
    const routed = refRoute(logP, 1, {...base, topkMethod: 'group_limited_greedy', nGroup: 2, routedScalingFactor: 2},
        null);
    expect(Array.from(routed.weights).map(v => +v.toFixed(12))).toEqual([0.8, 0.6]);
  });

  it('renormalizeEpsilon and rsf on the softmax and sigmoid paths', () => {
    const soft = refRoute(logP, 1, {...base, topkMethod: 'greedy', renormalize: true, renormalizeEpsilon: 0.3,
      routedScalingFactor: 3}, null);
    expect(soft.weights[0]).toBeCloseTo(3 * 0.4 / 1.0, 14);
    const sig = refRoute([0, 1, 2, 3], 1, {...base, topkMethod: 'noaux_tc', renormalize: true, renormalizeEpsilon: 0.5},
        null);
    const s3 = 1 / (1 + Math.exp(-3)), s2 = 1 / (1 + Math.exp(-2));
    expect(Array.from(sig.ids)).toEqual([3, 2]);
    expect(sig.weights[0]).toBeCloseTo(s3 / (s3 + s2 + 0.5), 14);
  });

  it('clamped SwiGLU: gate clamped above, up both sides, (up + 1) * gate * sigmoid(alpha * gate)', () => {
    const cfg = {activation: 'clamped_swiglu' as const, swigluAlpha: 1.702, swigluLimit: 7};
    expect(refActivation(10, -9, cfg)).toBeCloseTo(-6 * 7 * sig(1.702 * 7), 14);
    expect(refActivation(-30, 20, cfg)).toBeCloseTo(8 * -30 * sig(-1.702 * 30), 14);
    expect(refActivation(0.5, 2, cfg)).toBeCloseTo(3 * 0.5 * sig(0.851), 14);
    expect(refActivation(0.5, 2, {})).toBeCloseTo(0.5 * sig(0.5) * 2, 14);
  });

  it('router bias, zero-computation experts and the weight on the input', () => {
    // H=1, E=1 real expert + Z=1 identity; x = 2. Router weight [H, E+Z] = [0, 0], bias [0, ln 3]: p = [1/4, 3/4].
    const w = {gateWeight: [0, 0], gateBias: [0, Math.log(3)], upGateProjWeight: [1, 1], downProjWeight: [1]};
    const cfg = {...base, numExperts: 1, topK: 1, zeroExperts: 1, routerBias: true, topkMethod: 'greedy' as const};
    expect(refFusedMoE([2], 1, 1, w, cfg)[0]).toBeCloseTo(0.75 * 2, 14);  // the identity expert wins
    const both = refFusedMoE([2], 1, 1, w, {...cfg, topK: 2});
    expect(both[0]).toBeCloseTo(0.75 * 2 + 0.25 * (2 * sig(2) * 2), 14);
    // Llama-4: expert(w * x) instead of w * expert(x).
    const onInput = refFusedMoE([2], 1, 1, w, {...cfg, topK: 2, routingWeightOn: 'input'});
    expect(onInput[0]).toBeCloseTo(0.75 * 2 + 0.5 * sig(0.5) * 0.5, 14);
  });
});
