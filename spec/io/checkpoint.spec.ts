// tfjs-moe/node: one MoE block out of a sharded checkpoint folder, reading only that block's tensors.
import * as tf from '@tensorflow/tfjs-core';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import * as path from 'node:path';
import {loadHuggingFaceMoe} from 'tfjs-moe';
import {readMoeLayerFromCheckpoint, readSafetensorsFile} from 'tfjs-moe/node';

import {expectNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {applyAndRead, randn} from '../layers/layer_util.js';
import {refFusedMoE} from '../reference/moe_reference.js';
import {FAMILY_CASES, hfTensors, randomBlock, refFromHf} from './hf_test_util.js';
import {i64Bytes, RawTensor, writeSafetensors} from './safetensors_writer.js';

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
