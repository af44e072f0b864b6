/**
 * loadHuggingFaceMoe on the webgpu kernels (SwiftShader in CI) against transformers 5.17's own blocks
 * (spec/fixtures): every family the loader supports, in transformers' in-memory layout. The name mapping is
 * backend-independent and both layouts are checked on cpu and composite by spec/io/hf_import.spec.ts.
 */
import '@tensorflow/tfjs-layers';
import {FusedMoE, huggingFaceMoeSpec, loadHuggingFaceMoe, readSafetensors} from 'tfjs-moe';
import * as tf from '@tensorflow/tfjs-core';

import {expectNoLeak, recordError, relError} from '../helpers/util.js';
import {base64Bytes, fixtureNames, readFixture} from '../io/hf_fixtures.js';
import {applyAndRead} from '../layers/layer_util.js';
import {describeWebGPU} from './webgpu_env.js';

/** The layer (f32) against transformers' float64 forward of the same block, as in hf_import.spec.ts. */
const TRANSFORMERS_TOLERANCE = 1e-5;
const SLOW_MS = 300_000;

describeWebGPU('loadHuggingFaceMoe vs transformers 5.17 on webgpu', () => {
  const names = fixtureNames();

  it('covers every fixture: the 23 families (and the variants gpt_oss_mxfp4, deepseek_v2_greedy, lfm2_moe_plain)', () => {
    expect(new Set(names.map(n => huggingFaceMoeSpec(readFixture(n).config).family)).size).toBe(23);
  });

  for (const name of names) {
    // gpt_oss_mxfp4 has only the hub file (its MXFP4 tensors exist in no in-memory layout).
    const layout = readFixture(name).fused_safetensors_b64 != null ? 'in-memory names' : 'hub file';
    it(`${name}: ${layout}, webgpu`, async () => {
      const f = readFixture(name);
      const inMemory = f.fused_safetensors_b64 != null;
      const weights = readSafetensors(base64Bytes(inMemory ? f.fused_safetensors_b64! : f.hub_safetensors_b64));
      let layer: FusedMoE | null = null;
      try {
        layer = loadHuggingFaceMoe(f.config, weights, {prefix: inMemory ? f.prefix : f.hub_prefix, backend: 'webgpu'});
        expect(layer.selectedPath()).toBe('kernels:webgpu');
        const y = await expectNoLeak(() => applyAndRead(layer!, Float32Array.from(f.input.data), f.input.shape));
        const err = relError(y, f.output.data);
        recordError(`transformers ${name} [${layout}, webgpu]`, err);
        recordError('transformers, every family [webgpu]', err);
        expect(err).withContext(name).toBeLessThan(TRANSFORMERS_TOLERANCE);
      } finally {
        layer?.dispose();
        tf.dispose(Object.values(weights));
      }
    }, SLOW_MS);
  }
});
