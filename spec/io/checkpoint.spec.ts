// tfjs-moe/node: one MoE block out of a sharded checkpoint folder, reading only that block's tensors.
import * as tf from '@tensorflow/tfjs-core';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import * as path from 'node:path';
import * as moe from 'tfjs-moe';
import {loadHuggingFaceMoe} from 'tfjs-moe';
import {readMoeLayerFromCheckpoint, readSafetensorsFile} from 'tfjs-moe/node';

import {expectNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {applyAndRead, randn} from '../layers/layer_util.js';
import {refFusedMoE} from '../reference/moe_reference.js';
import {FAMILY_CASES, hfTensors, randomBlock, refFromHf} from './hf_test_util.js';
import {i64Bytes, RawTensor, u16Bytes, writeSafetensors} from './safetensors_writer.js';

async function raw(t: tf.Tensor): Promise<RawTensor> {
  const data = await t.data() as Float32Array;
  return {dtype: 'F32', shape: t.shape, bytes: new Uint8Array(data.buffer.slice(0))};
}

/** A tensor that throws if decoded (I64 out of int32 range): proof that the reader never decoded it. */
const POISON: RawTensor = {dtype: 'I64', shape: [1], bytes: i64Bytes([2n ** 40n])};

describe('readMoeLayerFromCheckpoint (tfjs-moe/node)', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-ckpt-'));
  });
  afterEach(() => {
    rmSync(dir, {recursive: true, force: true});
  });

  it('picks one layer out of a sharded checkpoint and matches the reference', async () => {
    const c = FAMILY_CASES.find(f => f.family === 'qwen2_moe')!;
    const values = randomBlock(c, rng(61));
    const block = hfTensors(c, values, 'hub', 'model.layers.1.mlp.');
    const names = Object.keys(block).sort();
    // The block is split over both shards, beside other layers' tensors that must not be read.
    const shards: Array<Record<string, RawTensor>> = [{'model.layers.0.mlp.experts.0.gate_proj.weight': POISON},
      {'model.layers.2.mlp.gate.weight': POISON, 'lm_head.weight': POISON}];
    for (const [i, name] of names.entries()) shards[i % 2][name] = await raw(block[name]);
    const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      writeFileSync(path.join(dir, files[i]), writeSafetensors(s));
      for (const name of Object.keys(s)) weightMap[name] = files[i];
    });
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({metadata: {}, weight_map: weightMap}));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c.config));

    const before = tf.memory().numTensors;
    const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 1});
    expect(ckpt.prefix).toBe('model.layers.1.mlp.');
    expect(Object.keys(ckpt.weights).sort()).toEqual(names);
    expect(tf.memory().numTensors).toBe(before + names.length);
    expect(ckpt.config).toEqual(c.config);
    const layer = loadHuggingFaceMoe(ckpt.config, ckpt.weights, {prefix: ckpt.prefix});
    tf.dispose(Object.values(ckpt.weights));
    const rand = rng(62);
    const x = randn(rand, 5 * c.H);
    const y = await expectNoLeak(() => applyAndRead(layer, x, [5, c.H]));
    const {weights, config} = refFromHf(c, values);
    const err = relError(y, refFusedMoE(x, 5, c.H, weights, config));
    recordError('checkpoint folder -> FusedMoE', err);
    expect(err).toBeLessThan(LAYER_TOLERANCE);
    layer.dispose();
    tf.dispose(Object.values(block));
  });

  it('reads a single-file checkpoint with Mixtral\'s block_sparse_moe names, and an explicit prefix', async () => {
    const c = FAMILY_CASES.find(f => f.family === 'mixtral')!;
    const block = hfTensors(c, randomBlock(c, rng(63)), 'hub', 'model.layers.0.block_sparse_moe.');
    const file: Record<string, RawTensor> = {'model.embed_tokens.weight': POISON};
    for (const [name, t] of Object.entries(block)) file[name] = await raw(t);
    writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(file));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c.config));
    for (const options of [{layer: 0}, {prefix: 'model.layers.0.block_sparse_moe'}]) {
      const ckpt = await readMoeLayerFromCheckpoint(dir, options);
      expect(ckpt.prefix).toBe('model.layers.0.block_sparse_moe.');
      expect(Object.keys(ckpt.weights).length).toBe(Object.keys(block).length);
      tf.dispose(Object.values(ckpt.weights));
    }
    const one = await readSafetensorsFile(path.join(dir, 'model.safetensors'), ['model.layers.0.block_sparse_moe.gate.weight']);
    expect(one['model.layers.0.block_sparse_moe.gate.weight'].shape).toEqual([c.E, c.H]);
    tf.dispose(Object.values(one));
    tf.dispose(Object.values(block));
  });

  it('fails clearly: no such layer, no config, a corrupt shard, a poisoned tensor', async () => {
    writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors({'model.layers.0.mlp.gate.weight': POISON}));
    await expectAsync(readMoeLayerFromCheckpoint(dir, {layer: 0})).toBeRejectedWithError(/cannot read model config/);
    writeFileSync(path.join(dir, 'config.json'), '{"model_type": "qwen3_moe"}');
    await expectAsync(readMoeLayerFromCheckpoint(dir, {layer: 3})).toBeRejectedWithError(
        /no tensor in .* starts with 'model.layers.3.mlp.' or 'model.layers.3.block_sparse_moe.'/);
    const before = tf.memory().numTensors;
    await expectAsync(readMoeLayerFromCheckpoint(dir, {layer: 0})).toBeRejectedWithError(/outside the int32 range/);
    expect(tf.memory().numTensors).toBe(before);
    writeFileSync(path.join(dir, 'model.safetensors'), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await expectAsync(readMoeLayerFromCheckpoint(dir, {layer: 0})).toBeRejectedWithError(/model.safetensors' is not a safetensors file$/);
    await expectAsync(readMoeLayerFromCheckpoint(dir, {} as never)).toBeRejectedWithError(/options need 'layer'/);
  });
});

/** Random 16-bit patterns of normal-ish values: bf16 = top half of a float32; f16 normals with exponents 12..16. */
function halfPatterns(rand: () => number, count: number, dtype: 'BF16' | 'F16'): Uint16Array {
  if (dtype === 'BF16') return Uint16Array.from(new Uint32Array(randn(rand, count, 0.4).buffer), b => b >>> 16);
  return Uint16Array.from({length: count}, () =>
    (rand() < 0.5 ? 0x8000 : 0) | ((12 + Math.floor(rand() * 5)) << 10) | Math.floor(rand() * 1024));
}

describe('readMoeLayerFromCheckpoint keepDtype into half layers', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-half-'));
  });
  afterEach(() => {
    rmSync(dir, {recursive: true, force: true});
  });

  /** A half checkpoint of case c: every tensor's patterns by name (torch layout), written as one file. */
  function writeHalfCheckpoint(c: typeof FAMILY_CASES[number], dtype: 'BF16' | 'F16', layout: 'hub' | 'fused',
                               seed: number, nanPayload: boolean): Map<string, {shape: number[], bits: Uint16Array}> {
    const rand = rng(seed);
    const shapes = new Map<string, number[]>();
    for (const [name, t] of Object.entries(hfTensors(c, randomBlock(c, rng(seed)), layout, 'model.layers.0.mlp.'))) {
      shapes.set(name, t.shape);
      t.dispose();
    }
    const tensors = new Map<string, {shape: number[], bits: Uint16Array}>();
    const file: Record<string, RawTensor> = {};
    for (const [name, shape] of shapes) {
      const bits = halfPatterns(rand, shape.reduce((a, b) => a * b, 1), dtype);
      // A NaN with a payload: any float32 round trip would write the canonical quiet NaN instead.
      if (nanPayload && /experts\.(1\.)?down_proj/.test(name)) bits[bits.length - 1] = dtype === 'BF16' ? 0x7f81 : 0x7c01;
      tensors.set(name, {shape, bits});
      file[name] = {dtype, shape, bytes: u16Bytes(bits)};
    }
    writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(file));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c.config));
    return tensors;
  }

  for (const family of ['qwen2_moe', 'qwen3_moe'] as const) {
    for (const dtype of ['BF16', 'F16'] as const) {
      it(`${family} (K ${family === 'qwen3_moe' ? 'odd' : 'even'}), ${dtype}: the file's 16-bit patterns become the ` +
         'layer\'s words, bit for bit (NaN payloads kept)', async () => {
        const c = FAMILY_CASES.find(f => f.family === family)!;
        const {E, H, I} = c;
        const format = dtype === 'BF16' ? 'bfloat16' : 'float16';
        for (const layout of ['hub', 'fused'] as const) {
          const tensors = writeHalfCheckpoint(c, dtype, layout, family.length * 3 + dtype.length, true);
          const before = tf.memory().numTensors;
          const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: true});
          for (const [name, w] of Object.entries(ckpt.weights)) {
            expect(moe.isRawSafetensor(w) && w.dtype === dtype).withContext(`${name} kept as raw ${dtype}`).toBeTrue();
          }
          const layer = loadHuggingFaceMoe(ckpt.config, ckpt.weights, {prefix: ckpt.prefix, expertWeightFormat: format});
          const at = (name: string) => tensors.get(`model.layers.0.mlp.${name}`)!.bits;
          // h(e, n, k): torch row n (output column) of expert e, input k; up_gate rows are gate rows then up rows.
          const upGate = (e: number, n: number, k: number) => layout === 'fused' ? at('experts.gate_up_proj')[(e * 2 * I + n) * H + k] :
              n < I ? at(`experts.${e}.${c.proj[0]}.weight`)[n * H + k] : at(`experts.${e}.${c.proj[1]}.weight`)[(n - I) * H + k];
          const down = (e: number, n: number, k: number) => layout === 'fused' ? at('experts.down_proj')[(e * H + n) * I + k] :
              at(`experts.${e}.${c.proj[2]}.weight`)[n * I + k];
          for (const [which, h, K, N] of [['up_gate_proj_weight', upGate, H, 2 * I], ['down_proj_weight', down, I, H]] as const) {
            const Kw = Math.ceil(K / 2), want = new Int32Array(E * Kw * N);
            for (let e = 0; e < E; e++) {
              for (let kw = 0; kw < Kw; kw++) {
                for (let n = 0; n < N; n++) {
                  want[(e * Kw + kw) * N + n] = h(e, n, 2 * kw) | (2 * kw + 1 < K ? h(e, n, 2 * kw + 1) << 16 : 0);
                }
              }
            }
            const q = layer.expertWeights(which);
            expect(q.format).toBe(format);
            expect(Array.from(await q.values.data())).withContext(`${layout} ${which}`).toEqual(Array.from(want));
          }
          layer.dispose();
          expect(tf.memory().numTensors).withContext('tensors after dispose').toBe(before);
        }
      });
    }
  }

  it('raw halves into other formats give exactly the codes of loading the decoded float32', async () => {
    const c = FAMILY_CASES.find(f => f.family === 'qwen2_moe')!;
    writeHalfCheckpoint(c, 'BF16', 'hub', 17, false);
    const raw = await readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: true});
    const decoded = await readMoeLayerFromCheckpoint(dir, {layer: 0});
    await expectNoLeak(async () => {
      for (const [format, groupSize] of [['float16', null], ['int4', 32], ['int8', null], ['mxfp4', null], ['float32', null]] as const) {
        const a = loadHuggingFaceMoe(raw.config, raw.weights, {prefix: raw.prefix, expertWeightFormat: format, quantGroupSize: groupSize});
        const b = loadHuggingFaceMoe(decoded.config, decoded.weights, {prefix: decoded.prefix, expertWeightFormat: format,
                                                                       quantGroupSize: groupSize});
        for (const which of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
          const qa = a.expertWeights(which), qb = b.expertWeights(which);
          for (const part of ['values', 'scales', 'zeroPoints'] as const) {
            expect(qa[part] == null).toBe(qb[part] == null);
            if (qa[part] != null) {
              expect(Array.from(await qa[part]!.data())).withContext(`${format} ${which}.${part}`)
                  .toEqual(Array.from(await qb[part]!.data()));
            }
          }
        }
        a.dispose();
        b.dispose();
      }
    });
    tf.dispose(Object.values(decoded.weights));
  });

  it('refuses a keepDtype that is not a boolean', async () => {
    await expectAsync(readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: 'yes' as never}))
        .toBeRejectedWithError(/option 'keepDtype' must be a boolean, got/);
    await expectAsync(readSafetensorsFile(path.join(dir, 'x.safetensors'), undefined, {keepDtype: 1 as never}))
        .toBeRejectedWithError(/option 'keepDtype' must be a boolean, got/);
  });
});

describe('entry points', () => {
  it('the root entry bundles for browsers (no node: imports); tfjs-moe/node loads through require and import', async () => {
    const {build} = await import('esbuild');
    const result = await build({entryPoints: ['src/index.ts'], bundle: true, platform: 'browser', format: 'esm',
      write: false, external: ['@tensorflow/*', 'webgpu'], logLevel: 'silent'});
    expect(result.errors).toEqual([]);
    const code = result.outputFiles[0].text;
    expect(code).not.toMatch(/from\s*["']node:|require\(["']node:/);
    const {execFileSync} = await import('node:child_process');
    const script = `const n = require('tfjs-moe/node'); if (typeof n.readMoeLayerFromCheckpoint !== 'function') process.exit(3);` +
        `import('tfjs-moe/node').then(e => process.exit(typeof e.readSafetensorsFile === 'function' ? 0 : 4));`;
    expect(() => execFileSync(process.execPath, ['-e', script], {stdio: 'pipe'})).not.toThrow();
  });
});
