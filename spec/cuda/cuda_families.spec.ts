/**
 * loadHuggingFaceMoe with backend 'cuda' (the native layer executor) against transformers 5.17's own MoE blocks
 * (spec/fixtures): every fixture, in both layouts (hub file and in-memory names), in float32 (1e-5 against
 * transformers' float64 run) and bfloat16 (the cuda executor's tensor-core path; its bound is the compute dtype's).
 * The per-family worst relative errors are recorded ("cuda family ...") and, with TFJS_MOE_FAMILY_TABLE set, written
 * there as JSON. Pending, with the reason, where CUDA is unavailable (it runs on the GPU machine).
 */
import {writeFileSync} from 'node:fs';

import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import {cudaStatus, FusedMoE, loadHuggingFaceMoe, readSafetensors} from 'tfjs-moe';
import {registerCudaLayerExecutor} from 'tfjs-moe/internal';

import {expectNoLeak, recordError, relError} from '../helpers/util.js';
import {base64Bytes, fixtureNames, HfFixture, readFixture} from '../io/hf_fixtures.js';
import {applyAndRead} from '../layers/layer_util.js';

const status = cudaStatus();
const unavailable = status.available ? null : `CUDA unavailable (${status.code}): ${status.reason}`;
/** As on cpu and webgpu (hf_import.spec.ts): the f32 layer against transformers' float64 block. */
const F32_TOLERANCE = 1e-5;
/** bfloat16 operands (8 bits of mantissa) through two GEMMs, float32 accumulation. */
const BF16_TOLERANCE = 3e-2;

type Layout = 'hub file' | 'in-memory names';
const table: Record<string, Record<string, number | string>> = {};

function layouts(f: HfFixture): Array<[Layout, string, string]> {
  const out: Array<[Layout, string, string]> = [['hub file', f.hub_safetensors_b64, f.hub_prefix]];
  // gpt_oss_mxfp4 has hub files only (transformers dequantizes MXFP4 when it loads).
  if (f.fused_safetensors_b64 != null) out.push(['in-memory names', f.fused_safetensors_b64, f.prefix]);
  return out;
}

describe('loadHuggingFaceMoe vs transformers 5.17 on the cuda layer executor', () => {
  beforeAll(() => {
    if (!unavailable) registerCudaLayerExecutor();  // other specs may have replaced it
  });
  afterAll(() => {
    const path = process.env.TFJS_MOE_FAMILY_TABLE;
    if (path && Object.keys(table).length > 0) writeFileSync(path, JSON.stringify(table, null, 1));
    const rows = Object.entries(table).sort(([a], [b]) => a.localeCompare(b));
    if (rows.length === 0) return;
    console.log('\ncuda executor vs transformers 5.17 (worst relative error per family):');
    for (const [name, r] of rows) {
      const cell = (k: string) => (typeof r[k] === 'number' ? (r[k] as number).toExponential(2) : String(r[k] ?? '-'));
      console.log(`  ${name.padEnd(22)} f32 hub ${cell('float32 hub file').padEnd(9)} f32 mem ${
          cell('float32 in-memory names').padEnd(9)} bf16 ${cell('bfloat16 hub file')}`);
    }
  });

  // TFJS_MOE_SPEC_SCALE=small (compute-sanitizer runs): float32, the families of section 11's semantics only.
  const small = process.env.TFJS_MOE_SPEC_SCALE === 'small';
  const dtypes = small ? ['float32'] as const : ['float32', 'bfloat16'] as const;
  const SECTION_11 = ['gpt_oss', 'gpt_oss_mxfp4', 'llama4_text', 'deepseek_v2', 'longcat_flash', 'lfm2_moe', 'phimoe'];
  for (const name of fixtureNames().filter(n => !small || SECTION_11.includes(n))) {
    for (const computeDtype of dtypes) {
      it(`${name}: both layouts, ${computeDtype}`, async () => {
        if (unavailable) pending(`${unavailable} (runs on the GPU machine)`);
        const f = readFixture(name);
        // bfloat16: one layout is enough (the layouts load the same weights, checked in float32).
        for (const [layout, b64, prefix] of layouts(f).slice(0, computeDtype === 'float32' ? 2 : 1)) {
          const weights = readSafetensors(base64Bytes(b64));
          let layer: FusedMoE | null = null;
          try {
            try {
              layer = loadHuggingFaceMoe(f.config, weights, {prefix, backend: 'cuda', computeDtype});
            } catch (e) {
              // A family the loader on this branch does not read yet (the loader's own specs assert that error).
              if (/is not supported yet/.test((e as Error).message)) {
                (table[name] ??= {})[`${computeDtype} ${layout}`] = 'loader: not yet';
                pending(`loader: ${(e as Error).message}`);
                return;
              }
              throw e;
            }
            expect(layer.selectedPath()).toBe('executor:cuda');
            const y = await expectNoLeak(() => applyAndRead(layer!, Float32Array.from(f.input.data), f.input.shape));
            const err = relError(y, f.output.data);
            (table[name] ??= {})[`${computeDtype} ${layout}`] = err;
            recordError(`cuda family ${name} [${layout}, ${computeDtype}]`, err);
            recordError(`cuda every family [${computeDtype}]`, err);
            expect(err).withContext(`${name} ${layout} ${computeDtype}`)
                .toBeLessThan(computeDtype === 'float32' ? F32_TOLERANCE : BF16_TOLERANCE);
          } finally {
            layer?.dispose();
            tf.dispose(Object.values(weights));
          }
        }
      }, 120_000);
    }
  }
});
