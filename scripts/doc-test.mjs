#!/usr/bin/env node
// The README doc test: every ```js block of README.md runs as written, as an ES module in a project where
// tfjs-moe is installed (the package check, scripts/package-check.mjs, runs it in a fresh consumer of the packed
// tarball; `node scripts/doc-test.mjs DIR` runs it in such a project DIR).
// A comment line right before a block may mark it:
//   <!-- doctest: stand-in A=>B C=>D (why) -->   replace the numbers A, C by B, D (small sizes for a large example)
//   <!-- doctest: checkpoint ./DIR (why) -->     write a tiny random qwen3_moe checkpoint folder DIR first
//   <!-- doctest: skip (why) -->                 do not run; the reason is printed
// ```html blocks with an import map: every mapped path must exist in the project. ```sh blocks are not run
// (they install packages); each is reported as skipped with that reason.
import {execFile} from 'node:child_process';
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {join, resolve} from 'node:path';
import {pathToFileURL} from 'node:url';
import {promisify} from 'node:util';

const run = promisify(execFile);

/** The fenced blocks of a markdown text: {lang, code, line, marker} (marker: the doctest comment before it). */
export function extractBlocks(markdown) {
  const lines = markdown.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    const before = start > 0 ? /^<!--\s*doctest:\s*(.*?)\s*-->$/.exec(lines[start - 1]) : null;
    blocks.push({lang: open[1], code: body.join('\n'), line: start + 1, marker: before ? before[1] : null});
  }
  return blocks;
}

/** Parses a marker: {kind: 'stand-in' | 'checkpoint' | 'skip', args, why}. */
export function parseMarker(marker) {
  const m = /^(stand-in|checkpoint|skip)\s*(.*?)\s*(?:\((.*)\))?$/.exec(marker);
  if (m == null) throw new Error(`unknown doctest marker '${marker}'`);
  return {kind: m[1], args: m[2] ? m[2].split(/\s+/) : [], why: m[3] ?? ''};
}

/** Applies `A=>B` number replacements (whole numbers only, so 2048 does not touch 20480). */
export function applyStandIns(code, pairs) {
  let out = code;
  for (const pair of pairs) {
    const [from, to] = pair.split('=>');
    if (!/^\d+$/.test(from) || !/^\d+$/.test(to)) throw new Error(`bad stand-in '${pair}' (want A=>B, numbers)`);
    const re = new RegExp(`(?<![\\w.])${from}(?![\\w.])`, 'g');
    if (!re.test(out)) throw new Error(`stand-in ${pair}: ${from} does not occur in the block`);
    out = out.replace(re, to);
  }
  return out;
}

/** A safetensors file of float32 tensors {name: {shape, data}}. */
function safetensors(tensors) {
  const header = {};
  let offset = 0;
  for (const [name, {shape, data}] of Object.entries(tensors)) {
    header[name] = {dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength]};
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'latin1');
  let at = 8 + json.length;
  for (const {data} of Object.values(tensors)) {
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, at);
    at += data.byteLength;
  }
  return out;
}

/** A tiny Qwen3-MoE-shaped checkpoint (4 layers, only MoE blocks and a distractor tensor) with random weights. */
export function writeTinyCheckpoint(dir) {
  const H = 16, I = 8, E = 4;
  let s = 12345;
  const random = n => Float32Array.from({length: n}, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2);
  const tensors = {'model.embed_tokens.weight': {shape: [32, H], data: random(32 * H)}};
  for (let layer = 0; layer < 4; layer++) {
    const p = `model.layers.${layer}.mlp.`;
    tensors[`${p}gate.weight`] = {shape: [E, H], data: random(E * H)};
    for (let e = 0; e < E; e++) {
      tensors[`${p}experts.${e}.gate_proj.weight`] = {shape: [I, H], data: random(I * H)};
      tensors[`${p}experts.${e}.up_proj.weight`] = {shape: [I, H], data: random(I * H)};
      tensors[`${p}experts.${e}.down_proj.weight`] = {shape: [H, I], data: random(H * I)};
    }
  }
  mkdirSync(dir, {recursive: true});
  writeFileSync(join(dir, 'config.json'), JSON.stringify({model_type: 'qwen3_moe', hidden_size: H,
    moe_intermediate_size: I, num_experts: E, num_experts_per_tok: 2, norm_topk_prob: true, num_hidden_layers: 4}));
  writeFileSync(join(dir, 'model.safetensors'), safetensors(tensors));
}

/**
 * Runs the README's blocks in `projectDir` (where tfjs-moe and its peers resolve). Resolves to
 * [{name, status: 'passed' | 'failed' | 'skipped', message}].
 */
export async function runReadmeBlocks(readmePath, projectDir, {timeoutMs = 120_000} = {}) {
  const blocks = extractBlocks(readFileSync(readmePath, 'utf8'));
  const workDir = join(projectDir, 'doctest');
  rmSync(workDir, {recursive: true, force: true});
  mkdirSync(workDir, {recursive: true});
  const results = [];
  for (const [n, block] of blocks.entries()) {
    const name = `README block ${n + 1} (line ${block.line}, ${block.lang || 'text'})`;
    try {
      const marker = block.marker ? parseMarker(block.marker) : null;
      if (marker?.kind === 'skip') {
        results.push({name, status: 'skipped', message: marker.why || 'marked skip'});
        continue;
      }
      if (block.lang === 'sh') {
        results.push({name, status: 'skipped', message: 'shell commands (package installs) are not run'});
        continue;
      }
      if (block.lang === 'html') {
        const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(block.code);
        if (map == null) {
          results.push({name, status: 'skipped', message: 'HTML without an import map'});
          continue;
        }
        const imports = JSON.parse(map[1]).imports;
        const missing = Object.entries(imports).filter(([, p]) => {
          try {
            readFileSync(resolve(projectDir, p));
            return false;
          } catch {
            return true;
          }
        });
        results.push({name, status: missing.length ? 'failed' : 'passed', message: missing.length ?
            `import map paths missing in an npm install: ${missing.map(([k, p]) => `${k} -> ${p}`).join(', ')}` :
            `${Object.keys(imports).length} import map paths exist`});
        continue;
      }
      if (block.lang !== 'js') {
        results.push({name, status: 'skipped', message: `not JavaScript (${block.lang || 'plain text'})`});
        continue;
      }
      let code = block.code;
      const dir = join(workDir, `block${n + 1}`);
      mkdirSync(dir, {recursive: true});
      if (marker?.kind === 'stand-in') code = applyStandIns(code, marker.args);
      if (marker?.kind === 'checkpoint') writeTinyCheckpoint(resolve(dir, marker.args[0]));
      const file = join(dir, 'block.mjs');
      writeFileSync(file, `${code}\n`);
      const t0 = Date.now();
      const {stdout} = await run(process.execPath, [file], {cwd: dir, timeout: timeoutMs, maxBuffer: 16 << 20});
      const said = stdout.split('\n').filter(l => l && !/^=+$|^Hi, looks like you are running TensorFlow\.js|^$/.test(l.trim()));
      results.push({name, status: 'passed', message: `${((Date.now() - t0) / 1000).toFixed(1)} s` +
          (marker ? ` [${marker.kind}${marker.why ? `: ${marker.why}` : ''}]` : '') +
          (said.length ? `; printed: ${said.join(' | ').slice(0, 200)}` : '')});
    } catch (e) {
      results.push({name, status: 'failed', message: (e.stderr || e.message || String(e)).slice(0, 2000)});
    }
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] == null) {
    console.error('usage: node scripts/doc-test.mjs DIR (a project with tfjs-moe and @tensorflow/tfjs installed)');
    process.exit(2);
  }
  const dir = resolve(process.argv[2]);
  const results = await runReadmeBlocks(resolve('README.md'), dir);
  for (const r of results) console.log(`${r.status.toUpperCase()}: ${r.name}: ${r.message}`);
  const count = s => results.filter(r => r.status === s).length;
  console.log(`${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped`);
  process.exit(count('failed') ? 1 : 0);
}
