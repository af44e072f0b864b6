// The float64 reference alone against transformers 5.17's own MoE blocks, for every fixture in spec/fixtures:
// if the reference's options cannot express a family, no backend can be checked against it.
import {recordError, relError} from '../helpers/util.js';
import {fixtureNames, readFixture, referenceOf} from '../io/hf_fixtures.js';
import {refFusedMoE, refRoute} from './moe_reference.js';

/**
 * transformers rounds the routing to float32 in most families even in a float64 model (moe-families.md N), so
 * its float64 run differs from float64 mathematics by about 1e-7; the float32 run by float32 rounding.
 */
const VS_FLOAT64 = 1e-6;
const VS_FLOAT32 = 1e-5;

const FAMILIES = ['afmoe', 'deepseek_v2', 'deepseek_v3', 'dots1', 'ernie4_5_moe', 'flex_olmo', 'glm4_moe', 'gpt_oss',
  'granitemoe', 'granitemoeshared', 'hunyuan_v1_moe', 'jamba', 'lfm2_moe', 'llama4_text', 'longcat_flash', 'minimax',
  'minimax_m2', 'mixtral', 'olmoe', 'phimoe', 'qwen2_moe', 'qwen3_moe', 'qwen3_next'];

describe('float64 reference vs transformers 5.17 MoE blocks (spec/fixtures)', () => {
  it('has a fixture for each of the 23 families', () => {
    const families = new Set(fixtureNames().map(n => readFixture(n).family));
    expect([...families].sort()).toEqual(FAMILIES);
  });

  for (const name of fixtureNames()) {
    it(name, () => {
      const f = readFixture(name);
      expect(f.output_dtype).toBe('float64');
      const {weights, config, H} = referenceOf(f);
      const T = f.input.data.length / H;
      const y = refFusedMoE(f.input.data, T, H, weights, config);
      const err64 = relError(y, f.output.data), err32 = relError(y, f.output_float32.data);
      recordError('reference vs transformers float64', err64);
      recordError('reference vs transformers float32', err32);
      expect(err64).withContext(`${name} vs the float64 run`).toBeLessThan(VS_FLOAT64);
      expect(err32).withContext(`${name} vs the float32 run`).toBeLessThan(VS_FLOAT32);

      // The experts each token chose, where the router returns them (an int64 [T,k] output): as sets, since
      // transformers' top-k is unsorted.
      const k = config.topK, N = config.numExperts + (config.zeroExperts ?? 0);
      const chosen = f.router_outputs.find(o => o.dtype === 'int64' && o.shape.join() === `${T},${k}`);
      if (name === 'jamba' || name === 'llama4_text') {
        expect(chosen).toBeUndefined();  // their routers return logits / dense scores only
        return;
      }
      expect(chosen).withContext(`${name} router ids`).toBeDefined();
      const logits = new Float64Array(T * N);
      for (let t = 0; t < T; t++) for (let e = 0; e < N; e++) {
        let acc = config.routerBias ? weights.gateBias![e] : 0;
        for (let h = 0; h < H; h++) acc += f.input.data[t * H + h] * weights.gateWeight[h * N + e];
        logits[t * N + e] = acc;
      }
      const {ids} = refRoute(logits, T, config, config.useCorrectionBias ? weights.gateCorrectionBias! : null);
      for (let t = 0; t < T; t++) {
        const want = [...chosen!.data.slice(t * k, (t + 1) * k)].sort((a, b) => a - b);
        const got = [...ids.subarray(t * k, (t + 1) * k)].sort((a, b) => a - b);
        expect(got).withContext(`${name} token ${t}`).toEqual(want);
      }
    });
  }
});
