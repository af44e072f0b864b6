// Hostile files (issue 10, items 1-3 and 10): nothing read outside the folder a user named, no file content in
// messages, no prototype pollution, no silent float32 overflow, no quadratic name lookup.
import * as tf from '@tensorflow/tfjs-core';
import {execFileSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import * as path from 'node:path';
import {readSafetensors} from 'tfjs-moe';
import {readMoeLayerFromCheckpoint, readSafetensorsFile} from 'tfjs-moe/node';

import {expectThrowsNoLeak} from '../helpers/util.js';
import {FAMILY_CASES, hfTensors, randomBlock} from '../io/hf_test_util.js';
import {f32Bytes, f32Tensor, f64Bytes, RawTensor, writeSafetensors} from '../io/safetensors_writer.js';
import {rng} from '../helpers/util.js';

/** A safetensors file from [name, tensor] pairs, names written verbatim (a plain object would eat '__proto__'). */
function writeNamed(pairs: Array<[string, RawTensor]>): Uint8Array {
  let offset = 0;
  const parts = pairs.map(([name, t]) => {
    const entry = `${JSON.stringify(name)}:${JSON.stringify({dtype: t.dtype, shape: t.shape,
      data_offsets: [offset, offset + t.bytes.length]})}`;
    offset += t.bytes.length;
    return entry;
  });
  let json = `{${parts.join(',')}}`;
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const header = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const [, t] of pairs) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

async function expectRejectsNoLeak(fn: () => Promise<unknown>, pattern: RegExp): Promise<Error> {
  const before = tf.memory().numTensors;
  let error: Error | null = null;
  try {
    await fn();
  } catch (e) {
    error = e as Error;
  }
  expect(error).withContext(`expected a rejection matching ${pattern}`).not.toBeNull();
  if (error != null) expect(error.message).toMatch(pattern);
  expect(tf.memory().numTensors).withContext('tf.memory().numTensors after the failed call').toBe(before);
  return error ?? new Error('none');
}

/** A mixtral block checkpoint (single file or one-shard index) written into dir. */
async function writeCheckpoint(dir: string, sharded: boolean): Promise<{shard: string, config: object}> {
  const c = FAMILY_CASES.find(f => f.family === 'mixtral')!;
  const block = hfTensors(c, randomBlock(c, rng(7)), 'hub', 'model.layers.0.mlp.');
  const file: Record<string, RawTensor> = {};
  for (const [name, t] of Object.entries(block)) {
    file[name] = {dtype: 'F32', shape: t.shape, bytes: f32Bytes(await t.data())};
  }
  tf.dispose(Object.values(block));
  const shard = sharded ? 'model-00001-of-00001.safetensors' : 'model.safetensors';
  writeFileSync(path.join(dir, shard), writeSafetensors(file));
  if (sharded) {
    writeFileSync(path.join(dir, 'model.safetensors.index.json'),
        JSON.stringify({weight_map: Object.fromEntries(Object.keys(file).map(n => [n, shard]))}));
  }
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c.config));
  return {shard, config: c.config};
}

describe('robust: checkpoint folder confinement (item 1)', () => {
  let root = '';
  let dir = '';
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-robust-'));
    dir = path.join(root, 'ckpt');
    mkdirSync(dir);
  });
  afterEach(() => rmSync(root, {recursive: true, force: true}));

  it('refuses a shard that is a symlink to a file outside the folder, unless allowOutsideFolder', async () => {
    const {shard} = await writeCheckpoint(dir, true);
    const outside = path.join(root, 'elsewhere.safetensors');
    execFileSync('mv', [path.join(dir, shard), outside]);
    symlinkSync(outside, path.join(dir, shard));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}),
        new RegExp(`safetensors shard '.*${shard}' resolves to '.*elsewhere.safetensors', outside the checkpoint ` +
            'folder.*allowOutsideFolder: true'));
    const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0, allowOutsideFolder: true});
    expect(Object.keys(ckpt.weights).length).toBeGreaterThan(0);
    tf.dispose(Object.values(ckpt.weights));
  });

  it('refuses config.json (and a single model.safetensors) linked from outside the folder', async () => {
    await writeCheckpoint(dir, false);
    execFileSync('mv', [path.join(dir, 'config.json'), path.join(root, 'secret.json')]);
    symlinkSync('../secret.json', path.join(dir, 'config.json'));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}),
        /model config '.*config.json' resolves to '.*secret.json', outside the checkpoint folder/);
    execFileSync('mv', [path.join(root, 'secret.json'), path.join(dir, 'config.json')]);
    execFileSync('mv', [path.join(dir, 'model.safetensors'), path.join(root, 'w.safetensors')]);
    symlinkSync(path.join(root, 'w.safetensors'), path.join(dir, 'model.safetensors'));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}), /resolves to '.*w.safetensors', outside/);
  });

  it('reads the Hugging Face cache layout (snapshots/<rev>/x -> ../../blobs/<hash>)', async () => {
    const repo = path.join(root, 'models--org--name');
    const snap = path.join(repo, 'snapshots', 'abc123');
    mkdirSync(snap, {recursive: true});
    mkdirSync(path.join(repo, 'blobs'));
    const {shard} = await writeCheckpoint(snap, true);
    for (const [i, name] of [shard, 'config.json', 'model.safetensors.index.json'].entries()) {
      execFileSync('mv', [path.join(snap, name), path.join(repo, 'blobs', `hash${i}`)]);
      symlinkSync(`../../blobs/hash${i}`, path.join(snap, name));
    }
    const ckpt = await readMoeLayerFromCheckpoint(snap, {layer: 0});
    expect(Object.keys(ckpt.weights).length).toBeGreaterThan(0);
    tf.dispose(Object.values(ckpt.weights));
    // ...but not a blob of a different repo.
    const other = path.join(root, 'models--org--other', 'blobs');
    mkdirSync(other, {recursive: true});
    execFileSync('mv', [path.join(repo, 'blobs', 'hash1'), path.join(other, 'hash1')]);
    rmSync(path.join(snap, 'config.json'));
    symlinkSync(path.join(other, 'hash1'), path.join(snap, 'config.json'));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(snap, {layer: 0}),
        /resolves to '.*models--org--other.*', outside the checkpoint folder .* and its Hugging Face cache folder/);
  });

  it('refuses FIFOs, devices and folders before reading (a FIFO shard used to hang forever)', async () => {
    const {shard} = await writeCheckpoint(dir, true);
    rmSync(path.join(dir, shard));
    execFileSync('mkfifo', [path.join(dir, shard)]);
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}), /shard '.*' is a FIFO, not a regular file/);
    rmSync(path.join(dir, shard));
    mkdirSync(path.join(dir, shard));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}), /is a folder, not a regular file/);
    rmSync(path.join(dir, shard), {recursive: true});
    symlinkSync('/dev/zero', path.join(dir, shard));
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0, allowOutsideFolder: true}),
        /is a device, not a regular file/);
    await expectRejectsNoLeak(() => readSafetensorsFile('/dev/zero'), /'\/dev\/zero' is a device, not a regular file/);
  });

  it("refuses weight_map values '.', '..', '' and paths, naming the value", async () => {
    await writeCheckpoint(dir, true);
    for (const bad of ['.', '..', '', '../x', 'sub/x']) {
      writeFileSync(path.join(dir, 'model.safetensors.index.json'),
          JSON.stringify({weight_map: {'model.layers.0.mlp.gate.weight': bad}}));
      await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}),
          new RegExp(`shard name ${JSON.stringify(bad).replace(/[.]/g, '\\.')} in the index must be a plain file name`));
    }
  });

  it('an index or config.json that is JSON null or an array is a clear error', async () => {
    await writeCheckpoint(dir, true);
    writeFileSync(path.join(dir, 'config.json'), 'null');
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}),
        /model config '.*config.json' must hold a JSON object, got null/);
    await writeCheckpoint(dir, true);
    for (const [text, got] of [['null', 'null'], ['[1,2]', 'an array']]) {
      writeFileSync(path.join(dir, 'model.safetensors.index.json'), text);
      await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}),
          new RegExp(`checkpoint index '.*' must hold a JSON object, got ${got}`));
    }
  });

  it('options: null, unknown keys, non-string prefix, non-boolean allowOutsideFolder name the argument', async () => {
    await writeCheckpoint(dir, false);
    const cases: Array<[unknown, RegExp]> = [
      [null, /argument 'options' must be an object \{layer\} or \{prefix\}, got null/],
      [{layr: 0}, /unknown option 'layr'/],
      [{prefix: 3n}, /option 'prefix' must be a non-empty string, got 3n \(a bigint\)/],
      [{layer: NaN}, /'layer' \(a non-negative integer\) or 'prefix', got layer NaN/],
      [{layer: 0, allowOutsideFolder: 'yes'}, /option 'allowOutsideFolder' must be a boolean, got "yes"/],
    ];
    for (const [options, pattern] of cases) {
      await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, options as {layer: number}), pattern);
    }
    await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(path.join(dir, 'config.json'), {layer: 0}),
        /the checkpoint folder '.*config.json' is a file, not a folder/);
  });
});

describe('robust: errors do not echo file contents (item 2)', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-robust-'));
  });
  afterEach(() => rmSync(dir, {recursive: true, force: true}));

  const text = new TextEncoder().encode('PASSWORD=hunter2\nmore secret text, long enough to be a file\n');
  const firstEight = new DataView(text.buffer).getBigUint64(0, true).toString();

  it('readSafetensors on a text file says "not a safetensors file" without the number its first bytes make', () => {
    let message = '';
    try {
      readSafetensors(text);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe('readSafetensors: not a safetensors file');
    expect(message).not.toContain(firstEight);
    expect(message).not.toContain(String(Number(firstEight)));
  });

  it('a plausible length is named: "header length N exceeds the file size"', () => {
    const f = writeSafetensors({a: f32Tensor([1], [1])});
    new DataView(f.buffer).setUint32(0, 1000, true);
    expectThrowsNoLeak(() => readSafetensors(f), /not a safetensors file \(header length 1000 exceeds the file size \d+\)$/);
  });

  it('the Node reader does the same, and a JSON parse error quotes no text', async () => {
    writeFileSync(path.join(dir, 'x.safetensors'), text);
    const error = await expectRejectsNoLeak(() => readSafetensorsFile(path.join(dir, 'x.safetensors')),
        /'.*x\.safetensors' is not a safetensors file$/);
    expect(error.message).not.toContain(firstEight);
    expect(error.message).not.toContain(String(Number(firstEight)));
    const header = new TextEncoder().encode('{"secret": hunter2}     ');
    const f = new Uint8Array(8 + header.length);
    new DataView(f.buffer).setUint32(0, header.length, true);
    f.set(header, 8);
    let message = '';
    try {
      readSafetensors(f);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^readSafetensors: header is not valid UTF-8 JSON/);
    expect(message).not.toContain('hunter2');
    writeFileSync(path.join(dir, 'config.json'), '{"token": hunter2}');
    writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors({a: f32Tensor([1], [1])}));
    const e2 = await expectRejectsNoLeak(() => readMoeLayerFromCheckpoint(dir, {layer: 0}), /is not valid JSON/);
    expect(e2.message).not.toContain('hunter2');
  });
});

describe('robust: readSafetensors results and options (items 3, 10)', () => {
  it('tensors named __proto__, constructor, toString are own keys of a null-prototype result; nothing leaks', () => {
    const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    const file = writeNamed(names.map((n, i) => [n, f32Tensor([i], [1])]));
    const before = tf.memory().numTensors;
    const out = readSafetensors(file);
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(Object.keys(out).sort()).toEqual([...names].sort());
    for (const n of names) expect(Object.prototype.hasOwnProperty.call(out, n)).toBeTrue();
    expect(tf.memory().numTensors).toBe(before + names.length);
    for (const n of names) expect(out[n].dataSync()[0]).toBe(names.indexOf(n));
    tf.dispose(Object.values(out));
    expect(tf.memory().numTensors).toBe(before);
    expect(({} as Record<string, unknown>).constructor).toBe(Object);  // nothing assigned to Object.prototype
  });

  it('the Node reader keeps __proto__ safely too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-robust-'));
    try {
      writeFileSync(path.join(dir, 'p.safetensors'), writeNamed([['__proto__', f32Tensor([5], [1])]]));
      const out = await readSafetensorsFile(path.join(dir, 'p.safetensors'), ['__proto__']);
      expect(Object.getPrototypeOf(out)).toBeNull();
      expect(Object.keys(out)).toEqual(['__proto__']);
      tf.dispose(Object.values(out));
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });

  it("options.names must be an array of strings or a predicate (a string used to match by substring)", () => {
    const file = writeSafetensors({ab: f32Tensor([1], [1]), b: f32Tensor([2], [1])});
    expectThrowsNoLeak(() => readSafetensors(file, {names: 'ab' as unknown as string[]}),
        /option 'names' must be an array of tensor names or a predicate, got "ab"/);
    expectThrowsNoLeak(() => readSafetensors(file, {names: [1] as unknown as string[]}),
        /option 'names' must be an array of tensor names or a predicate, got an array of length 1/);
    expectThrowsNoLeak(() => readSafetensors(file, 'ab' as unknown as {}), /argument 'options' must be an options object/);
  });

  it('F64 values outside the float32 range are an error naming the tensor; +-Infinity and NaN stay', () => {
    for (const bad of [1e300, -1e39, 3.5e38]) {
      const file = writeSafetensors({ok: f32Tensor([1], [1]), d: {dtype: 'F64', shape: [2], bytes: f64Bytes([1, bad])}});
      expectThrowsNoLeak(() => readSafetensors(file),
          new RegExp(`tensor 'd' \\(F64\\) holds ${String(bad).replace('+', '\\+')} at flat index 1, outside the float32 range`));
    }
    const file = writeSafetensors({d: {dtype: 'F64', shape: [4], bytes: f64Bytes([Infinity, -Infinity, NaN, 3.4e38])}});
    const out = readSafetensors(file);
    expect(Array.from(out.d.dataSync())).toEqual([Infinity, -Infinity, NaN, Math.fround(3.4e38)]);
    tf.dispose(Object.values(out));
  });

  it('a names list is looked up through a set, not scanned per entry (20k names over 200k entries took 14 s)', () => {
    const count = 2000;
    const tensors: Record<string, RawTensor> = {};
    for (let i = 0; i < count; i++) tensors[`t${i}`] = {dtype: 'U8', shape: [0], bytes: new Uint8Array(0)};
    const file = writeSafetensors(tensors);
    const names = Array.from({length: count / 2}, (_, i) => `t${2 * i}`);
    // A per-entry scan of the list calls one of these once per entry; a set is built by iterating once.
    let scans = 0;
    for (const method of ['includes', 'indexOf', 'some', 'find', 'filter']) {
      const original = (Array.prototype as unknown as Record<string, (...a: unknown[]) => unknown>)[method];
      Object.defineProperty(names, method, {value(this: unknown, ...a: unknown[]) {
        scans++;
        return original.apply(this, a);
      }});
    }
    const out = readSafetensors(file, {names});
    expect(Object.keys(out).length).toBe(count / 2);
    expect(scans).withContext('per-entry scans of options.names').toBeLessThanOrEqual(1);
    tf.dispose(Object.values(out));
  });
});
